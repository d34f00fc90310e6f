//! Conditions in CEL: compiled once at load, evaluated against lazily built variables.
//!
//! A condition only pays for what it reads: the arguments are parsed, the claims converted
//! and the session history materialized only when the expression names them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use cel::common::types::{CelList, CelMap, CelMapKey, CelString, CelTimestamp};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};
use serde_json::value::RawValue;

use super::Caller;
use super::history::HistoryState;

/// The variables a condition can use. Anything else is refused when the config loads.
pub const VARIABLES: &[&str] = &[
    "method",
    "name",
    "uri",
    "args",
    "claims",
    "subject",
    "issuer",
    "client_id",
    "scopes",
    "now",
    "session",
];

/// Which inputs an expression reads; decides what must be built before evaluating it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub args: bool,
    pub session: bool,
    pub claims: bool,
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    program: Program,
    source: Box<str>,
    pub needs: Needs,
}

/// The shared CEL environment (standard library and macros).
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib())).clone()
}

impl Condition {
    /// Compiles `source`, refusing variables the policy does not provide.
    pub fn compile(source: &str) -> Result<Condition, String> {
        let program = env()
            .compile(source)
            .map_err(|e| e.to_string().trim().to_owned())?;
        let refs = program.references();
        let mut unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| !VARIABLES.contains(v) && !bound_in(source, v))
            .collect();
        unknown.sort_unstable();
        if let Some(v) = unknown.first() {
            return Err(format!(
                "unknown variable `{v}` (available: {})",
                VARIABLES.join(", ")
            ));
        }
        let needs = Needs {
            args: refs.has_variable("args"),
            session: refs.has_variable("session"),
            claims: refs.has_variable("claims"),
        };
        Ok(Condition {
            program,
            source: source.into(),
            needs,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a boolean; any other result or an evaluation error is an error (callers
    /// fail closed).
    pub fn eval(&self, vars: &Vars<'_>) -> Result<bool, String> {
        let mut ctx = Context::with_env(env());
        ctx.set_variable_resolver(vars);
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition `{}` returned {:?}, not a bool",
                self.source,
                other.type_of()
            )),
            Err(e) => Err(format!("condition `{}` failed: {e}", self.source)),
        }
    }
}

/// Whether `name` is introduced by a comprehension macro in `source` (`x` in
/// `list.exists(x, …)`), which the reference list reports like a free variable.
fn bound_in(source: &str, name: &str) -> bool {
    ["all", "exists", "exists_one", "map", "filter"]
        .iter()
        .any(|m| {
            let pat = format!(".{m}(");
            source.match_indices(&pat).any(|(i, _)| {
                source[i + pat.len()..]
                    .trim_start()
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.trim_start().starts_with(','))
            })
        })
}

/// The inputs of one evaluation. Expensive variables are built at most once, on first use.
pub struct Vars<'a> {
    pub caller: &'a dyn Caller,
    pub method: &'a str,
    pub name: &'a str,
    pub uri: &'a str,
    pub args: Option<&'a RawValue>,
    pub history: Option<&'a HistoryState>,
    pub now: SystemTime,
    built_args: OnceLock<Option<Box<dyn Val>>>,
    built_claims: OnceLock<Box<dyn Val>>,
    built_session: OnceLock<Box<dyn Val>>,
}

impl std::fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the arguments or claims: they may carry user data.
        f.debug_struct("Vars")
            .field("method", &self.method)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<'a> Vars<'a> {
    pub fn new(
        caller: &'a dyn Caller,
        method: &'a str,
        name: &'a str,
        uri: &'a str,
        args: Option<&'a RawValue>,
        history: Option<&'a HistoryState>,
        now: SystemTime,
    ) -> Vars<'a> {
        Vars {
            caller,
            method,
            name,
            uri,
            args,
            history,
            now,
            built_args: OnceLock::new(),
            built_claims: OnceLock::new(),
            built_session: OnceLock::new(),
        }
    }
}

fn boxed(value: Value) -> Box<dyn Val> {
    Box::<dyn Val>::try_from(value).unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

fn json_to_val(json: &serde_json::Value) -> Box<dyn Val> {
    boxed(cel::to_value(json).unwrap_or(Value::Null))
}

impl VariableResolver for Vars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let v: CowVal<'b, 'b> = match variable {
            "method" => CowVal::owned(CelString::from(self.method)),
            "name" => CowVal::owned(CelString::from(self.name)),
            "uri" => CowVal::owned(CelString::from(self.uri)),
            "subject" => CowVal::owned(CelString::from(self.caller.subject())),
            "issuer" => CowVal::owned(CelString::from(self.caller.issuer())),
            "client_id" => match self.caller.client_id() {
                Some(c) => CowVal::owned(CelString::from(c)),
                None => CowVal::owned(cel::common::types::CelNull),
            },
            "scopes" => {
                let list: Vec<Box<dyn Val + 'b>> = self
                    .caller
                    .scopes()
                    .iter()
                    .map(|s| Box::new(CelString::from(s.as_str())) as Box<dyn Val + 'b>)
                    .collect();
                CowVal::owned(CelList::from(list))
            }
            "now" => {
                let t = chrono::DateTime::<chrono::Utc>::from(self.now).fixed_offset();
                CowVal::owned(CelTimestamp::from(t))
            }
            "args" => {
                // No arguments read as `{}`; arguments that do not parse are no value at all,
                // so the condition fails to evaluate and the policy fails closed.
                let built = self.built_args.get_or_init(|| {
                    let parsed = match self.args {
                        None => Some(serde_json::Value::Object(Default::default())),
                        Some(raw) => serde_json::from_str::<serde_json::Value>(raw.get()).ok(),
                    };
                    parsed.map(|v| json_to_val(&v))
                });
                CowVal::Borrowed(&**built.as_ref()?)
            }
            "claims" => CowVal::Borrowed(&**self.built_claims.get_or_init(|| {
                let map = self.caller.claims();
                json_to_val(&serde_json::Value::Object(map.clone()))
            })),
            "session" => CowVal::Borrowed(&**self.built_session.get_or_init(|| {
                self.history
                    .map_or_else(|| boxed(Value::Null), |h| session_val(h))
            })),
            _ => return None,
        };
        Some(v)
    }
}

fn session_val(h: &HistoryState) -> Box<dyn Val> {
    let marks: Vec<Box<dyn Val>> = h
        .marks()
        .map(|m| Box::new(CelString::from(m.to_owned())) as Box<dyn Val>)
        .collect();
    let calls: Vec<Box<dyn Val>> = h
        .calls()
        .map(|c| {
            let mut m: HashMap<CelMapKey, Box<dyn Val>> = HashMap::with_capacity(2);
            m.insert(
                CelMapKey::from("method".to_owned()),
                Box::new(CelString::from(c.method.to_owned())),
            );
            m.insert(
                CelMapKey::from("name".to_owned()),
                Box::new(CelString::from(c.name.to_string())),
            );
            Box::new(CelMap::from(m)) as Box<dyn Val>
        })
        .collect();
    let mut m: HashMap<CelMapKey, Box<dyn Val>> = HashMap::with_capacity(3);
    m.insert(
        CelMapKey::from("marks".to_owned()),
        Box::new(CelList::from(marks)),
    );
    m.insert(
        CelMapKey::from("calls".to_owned()),
        Box::new(CelList::from(calls)),
    );
    m.insert(
        CelMapKey::from("count".to_owned()),
        Box::new(cel::common::types::CelInt::from(h.total() as i64)),
    );
    Box::new(CelMap::from(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Identity, history::History};

    fn caller() -> Identity {
        let mut id = Identity::new("https://as.example", "alice");
        id.scopes.insert("mcp:read".into());
        id.client_id = Some("cli".into());
        id.claims.insert("dept".into(), "eng".into());
        id.claims.insert("level".into(), 3.into());
        id
    }

    fn eval(src: &str, args: &str) -> Result<bool, String> {
        let c = Condition::compile(src)?;
        let id = caller();
        let raw = RawValue::from_string(args.to_owned()).unwrap();
        let history = History::new(8);
        let state = history.lock();
        let vars = Vars::new(
            &id,
            "tools/call",
            "echo",
            "",
            Some(&raw),
            Some(&state),
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365),
        );
        c.eval(&vars)
    }

    #[test]
    fn variables_are_available() {
        assert_eq!(
            eval(r#"name == "echo" && method == "tools/call""#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(r#"claims.dept == "eng" && claims.level > 2"#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(r#""mcp:read" in scopes && client_id == "cli""#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(
                r#"args.path.startsWith("/secrets/")"#,
                r#"{"path":"/secrets/k"}"#
            ),
            Ok(true)
        );
        assert_eq!(
            eval(r#"now > timestamp("1970-06-01T00:00:00Z")"#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(r#"session.count == 0 && !("x" in session.marks)"#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(r#"!session.calls.exists(c, c.name == "read_file")"#, "{}"),
            Ok(true)
        );
        assert_eq!(
            eval(
                r#"subject == "alice" && issuer.startsWith("https://")"#,
                "{}"
            ),
            Ok(true)
        );
    }

    #[test]
    fn what_each_condition_needs_is_known() {
        let c = Condition::compile(r#"args.x == 1 || "m" in session.marks"#).unwrap();
        assert_eq!(
            c.needs,
            Needs {
                args: true,
                session: true,
                claims: false
            }
        );
        assert_eq!(
            Condition::compile("name == 'x'").unwrap().needs,
            Needs::default()
        );
    }

    #[test]
    fn bad_conditions_are_refused_at_compile_or_fail_closed() {
        assert!(Condition::compile("name ==").is_err());
        let e = Condition::compile("nmae == 'x'").unwrap_err();
        assert!(e.contains("unknown variable `nmae`"), "{e}");
        // Not a bool, or a missing field: an error, which callers treat as deny.
        assert!(eval("name", "{}").is_err());
        assert!(eval("args.missing == 1", "{}").is_err());
    }

    #[test]
    fn arguments_that_do_not_parse_are_no_value() {
        // Not `{}`: `!has(args.path)` would hold for any request whose arguments hide a lone
        // surrogate somewhere.
        assert_eq!(eval("!has(args.path)", r#"{"note":"x"}"#), Ok(true));
        assert!(eval("!has(args.path)", r#"{"path":"/s","note":"\ud800"}"#).is_err());
    }
}
