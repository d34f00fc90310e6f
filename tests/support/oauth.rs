//! A public OAuth client and a cookie-keeping "browser" for the authorization server
//! tests: PKCE, registration, the authorization request followed hop by hop, our pages'
//! forms read and posted like a browser posts them, and the token endpoint.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A PKCE pair.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn pkce() -> Pkce {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(b);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    Pkce {
        challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        verifier,
    }
}

/// One answer, as a browser sees it before following anything.
#[derive(Debug, Clone)]
pub struct Hop {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    pub url: String,
}

impl Hop {
    /// The query parameters of the redirect.
    pub fn redirect_params(&self) -> HashMap<String, String> {
        let loc = self
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("no redirect: {} {}", self.status, self.body));
        url::Url::parse(loc)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// The page's (first) POST form.
    pub fn form(&self) -> Form {
        Form::parse(&self.body, &self.url)
            .unwrap_or_else(|| panic!("no form on {} ({}): {}", self.url, self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A form of one of our pages: its action and fields (hidden ones, and checked boxes).
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let re = regex::Regex::new(&format!(r#"\b{name}="([^"]*)""#)).unwrap();
    re.captures(tag).map(|c| {
        c[1].replace("&amp;", "&")
            .replace("&#38;", "&")
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
    })
}

impl Form {
    pub fn parse(html: &str, base: &str) -> Option<Form> {
        let start = html.find("<form")?;
        let end = html[start..].find("</form>")? + start;
        let form = &html[start..end];
        let tag_end = form.find('>')?;
        let action = attr(&form[..tag_end], "action")?;
        let action = url::Url::parse(base).ok()?.join(&action).ok()?.to_string();
        let mut fields = Vec::new();
        for tag in regex::Regex::new(r"<input[^>]*>").unwrap().find_iter(form) {
            let tag = tag.as_str();
            let (Some(name), value) = (attr(tag, "name"), attr(tag, "value")) else {
                continue;
            };
            let kind = attr(tag, "type").unwrap_or_default();
            if kind == "checkbox" && !tag.contains(" checked") {
                continue;
            }
            fields.push((name, value.unwrap_or_default()));
        }
        Some(Form { action, fields })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set(mut self, name: &str, value: &str) -> Form {
        self.fields.retain(|(k, _)| k != name);
        self.fields.push((name.into(), value.into()));
        self
    }

    pub fn add(mut self, name: &str, value: &str) -> Form {
        self.fields.push((name.into(), value.into()));
        self
    }

    pub fn remove(mut self, name: &str) -> Form {
        self.fields.retain(|(k, _)| k != name);
        self
    }
}

/// A browser: keeps cookies, never follows redirects on its own.
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    pub cookies: HashMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Browser::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn hop(&mut self, url: &str, r: reqwest::Response) -> Hop {
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let kv = c.split(';').next().unwrap();
            if let Some((k, v)) = kv.split_once('=') {
                self.cookies.insert(k.trim().into(), v.trim().into());
            }
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let location = headers.get("location").map(|l| {
            url::Url::parse(url)
                .unwrap()
                .join(l.to_str().unwrap())
                .unwrap()
                .to_string()
        });
        Hop {
            status,
            location,
            headers,
            body: r.text().await.unwrap_or_default(),
            url: url.to_owned(),
        }
    }

    pub async fn get(&mut self, url: &str) -> Hop {
        let r = self
            .http
            .get(url)
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.hop(url, r).await
    }

    /// Posts a form as a browser does from a page of `origin` to that page's own server
    /// (Origin and Fetch Metadata headers as a browser sets them).
    pub async fn submit(&mut self, form: &Form, origin: &str) -> Hop {
        let r = self
            .http
            .post(&form.action)
            .header("cookie", self.cookie_header())
            .header("origin", origin)
            .header("sec-fetch-site", "same-origin")
            .form(&form.fields)
            .send()
            .await
            .unwrap();
        let action = form.action.clone();
        self.hop(&action, r).await
    }

    /// Follows redirects from `url` until one leads to `stop` (returned, not followed) or a
    /// page answers (returned).
    pub async fn follow(&mut self, url: &str, stop: &str) -> Hop {
        let mut next = url.to_owned();
        for _ in 0..12 {
            let hop = self.get(&next).await;
            match &hop.location {
                Some(loc) if loc.starts_with(stop) => return hop,
                Some(loc) if (300..400).contains(&hop.status) => next = loc.clone(),
                _ => return hop,
            }
        }
        panic!("too many redirects from {url}");
    }
}

/// Registers a public client by dynamic registration; returns its client_id.
pub async fn register(base: &str, redirect_uris: &[&str]) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/oauth/register"))
        .json(&serde_json::json!({
            "client_name": "mcp-warden test client",
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "application_type": "native",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["client_id"]
        .as_str()
        .unwrap_or_else(|| panic!("registration failed: {r}"))
        .to_owned()
}

/// The authorization URL for these parameters.
pub fn authorize_url(base: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{base}/oauth/authorize")).unwrap();
    u.query_pairs_mut().extend_pairs(params);
    u.to_string()
}

/// POSTs a form to the token endpoint; returns the status and the JSON answer.
pub async fn token(base: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/oauth/token"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The claims of a JWT (unverified).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}
