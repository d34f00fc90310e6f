//! `mcp-warden check-config` and `mcp-warden audit verify`: offline checks of a configuration
//! file and of an audit log's chain.

use std::path::Path;
use std::process::ExitCode;

use super::say;

pub(super) fn check_config(file: &Path) -> ExitCode {
    match crate::config::file::load(file) {
        Ok(cfg) => {
            let audit = match &cfg.audit {
                Some(a) => match &a.output {
                    crate::audit::Output::Stdout => "audit to stdout".into(),
                    crate::audit::Output::File(p) => format!("audit to {}", p.display()),
                },
                None => "no audit".into(),
            };
            let named: Vec<String> = cfg
                .connections
                .iter()
                .map(|c| {
                    let required = if c.required { ", required" } else { "" };
                    format!("{} ({}{required})", c.name, c.env)
                })
                .collect();
            let connections = match named.len() {
                0 => String::new(),
                n => format!(
                    "; {n} connections: {}; no warm spares (--spare): each server gets its user's connections",
                    named.join(", ")
                ),
            };
            say(&format!(
                "{}: ok ({}; {audit}{connections})",
                file.display(),
                cfg.policy.summary()
            ));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

pub(super) fn verify(
    file: &Path,
    key_file: Option<&Path>,
    anchor_file: Option<&Path>,
    live: bool,
) -> ExitCode {
    let key = match key_file.map(std::fs::read) {
        None => None,
        Some(Ok(k)) => Some(k.trim_ascii().to_vec()),
        Some(Err(e)) => {
            eprintln!("mcp-warden: cannot read the HMAC key file: {e}");
            return ExitCode::from(2);
        }
    };
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            eprintln!("mcp-warden: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let default_anchor = crate::config::file::default_anchor(file);
    let (anchor_path, required) = match anchor_file {
        Some(p) => (p.to_path_buf(), true),
        None => (default_anchor, false),
    };
    let anchor = match std::fs::read_to_string(&anchor_path) {
        Ok(text) => match crate::audit::Anchor::parse(&text) {
            Some(a) => Some(a),
            None => {
                eprintln!(
                    "{}: TAMPERED: the anchor {} is not an anchor",
                    file.display(),
                    anchor_path.display()
                );
                return ExitCode::from(1);
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
        Err(e) => {
            eprintln!("mcp-warden: {}: {e}", anchor_path.display());
            return ExitCode::from(2);
        }
    };
    let expect = crate::audit::Expect { anchor, live };
    match crate::audit::verify(reader, &crate::audit::Hasher::new(key), &expect) {
        Ok(report) => {
            let head = &report.head;
            if report.gaps.is_empty() {
                say(&format!(
                    "{}: ok: {} records, head seq {} hash {}",
                    file.display(),
                    head.records,
                    head.seq,
                    head.hash
                ));
                return ExitCode::SUCCESS;
            }
            eprintln!(
                "{}: INCOMPLETE: {} records intact, head seq {} hash {}, and {} gap(s):",
                file.display(),
                head.records,
                head.seq,
                head.hash,
                report.gaps.len()
            );
            for gap in &report.gaps {
                eprintln!("  {gap}");
            }
            ExitCode::from(1)
        }
        Err(broken) => {
            eprintln!("{}: TAMPERED: {broken}", file.display());
            ExitCode::from(1)
        }
    }
}
