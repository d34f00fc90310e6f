//! Server-rendered pages (no JavaScript), shared by every browser flow: the page models,
//! their templates (auto-escaped), the stylesheet, and the security headers every page is
//! sent with. The HTTP layer only attaches these to responses.

use askama::Template;

/// The stylesheet, served at [`CSS_PATH`] under the issuer.
pub const CSS: &str = include_str!("templates/warden.css");
pub const CSS_PATH: &str = "/oauth/static/warden.css";

/// A rendered page and how it must be sent.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: u16,
    pub html: String,
    /// The origins (space-separated) a form on this page may lead to besides ours (the
    /// client's redirect target, a provider, reached by a 303 after the form is posted):
    /// added to `form-action`.
    pub form_target: Option<String>,
}

impl Page {
    /// The Content-Security-Policy of this page: nothing but our stylesheet, no frames
    /// around it (RFC 9700 §4.16), forms only to us and to the client's redirect.
    pub fn csp(&self) -> String {
        let target = self
            .form_target
            .as_deref()
            .map(|t| format!(" {t}"))
            .unwrap_or_default();
        format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{target}; frame-ancestors 'none'; base-uri 'none'"
        )
    }
}

/// What a page says about the client.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// The client's self-asserted name, cleaned.
    pub name: String,
    /// A metadata document client: the host of its `client_id` URL, which vouches for it.
    pub verified: bool,
    pub host: String,
    /// A registered client: how long ago it registered.
    pub age: String,
    /// The host (and, for loopback, the port) the browser goes to next.
    pub redirect_host: String,
}

#[derive(Debug, Clone)]
pub struct ScopeChoice {
    pub name: String,
    pub checked: bool,
}

#[derive(Debug, Template)]
#[template(path = "dev_login.html")]
pub struct DevLoginPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub action: &'a str,
    pub flow: &'a str,
    pub csrf: &'a str,
    pub client: &'a ClientView,
    pub scopes: Vec<ScopeChoice>,
}

#[derive(Debug, Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub action: &'a str,
    pub flow: &'a str,
    pub csrf: &'a str,
    pub client: &'a ClientView,
    pub user: &'a str,
    pub scopes: &'a [String],
    pub warnings: Vec<&'static str>,
}

#[derive(Debug, Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub message: &'a str,
    pub reason: &'a str,
    pub return_url: Option<&'a str>,
}

#[derive(Debug, Template)]
#[template(path = "connected.html")]
pub struct ConnectedPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub connection: &'a str,
    pub scopes: &'a [String],
}

#[derive(Debug, Template)]
#[template(path = "connect.html")]
pub struct ConnectPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub user: &'a str,
    pub connection: &'a str,
    pub provider: &'a str,
    pub scopes: &'a [String],
    pub connections_url: &'a str,
    pub action: &'a str,
    pub flow: &'a str,
    pub csrf: &'a str,
    /// Right after signing in: the user may go on without connecting.
    pub later: bool,
}

/// One row of the connections page.
#[derive(Debug, Clone)]
pub struct ConnectionRow {
    pub name: String,
    pub provider: String,
    pub scopes: Vec<String>,
    pub granted: String,
    pub last_used: String,
    pub state: &'static str,
    pub revocable: bool,
}

#[derive(Debug, Template)]
#[template(path = "connections.html")]
pub struct ConnectionsPage<'a> {
    pub title: &'a str,
    pub resource_name: &'a str,
    pub css_url: &'a str,
    pub user: &'a str,
    pub action: &'a str,
    pub flow: &'a str,
    pub csrf: &'a str,
    pub rows: Vec<ConnectionRow>,
}

/// Renders a template; a template that cannot render is a bug, shown as a bare page.
pub fn render(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render a page");
        "<!doctype html><title>Error</title><p>This page cannot be shown.</p>".to_owned()
    })
}

/// "3 minutes ago" and the like.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..60 => return "just now".to_owned(),
        60..3600 => (s / 60, "minute"),
        3600..86_400 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientView {
        ClientView {
            name: "<script>alert(1)</script>".into(),
            verified: true,
            host: "app.example".into(),
            age: String::new(),
            redirect_host: "localhost:8080".into(),
        }
    }

    #[test]
    fn pages_escape_what_clients_say() {
        let c = client();
        let html = render(&ConsentPage {
            title: "Allow access?",
            resource_name: "Tools",
            css_url: "/oauth/static/warden.css",
            action: "/oauth/consent",
            flow: "f\"><b>",
            csrf: "c",
            client: &c,
            user: "alice@corp.example",
            scopes: &["mcp:tools".to_owned()],
            warnings: vec!["You have not used this application here before."],
        });
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&#60;script&#62;"));
        assert!(!html.contains("f\"><b>"));
        assert!(html.contains("app.example") && html.contains("localhost:8080"));
        assert!(html.contains("mcp:tools") && html.contains("not used this application"));
        assert!(!html.contains("<script"), "no JavaScript on any page");
    }

    #[test]
    fn the_policy_forbids_framing_and_scripts() {
        let p = Page {
            status: 200,
            html: String::new(),
            form_target: Some("http://127.0.0.1:4000".into()),
        };
        let csp = p.csp();
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("script-src"));
        assert!(csp.contains("form-action 'self' http://127.0.0.1:4000;"));
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(5), "just now");
        assert_eq!(age(180), "3 minutes ago");
        assert_eq!(age(3600), "1 hour ago");
        assert_eq!(age(86_400 * 3), "3 days ago");
    }
}
