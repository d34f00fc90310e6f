//! The stand-in for GitHub (`tests/js/github.mjs`): GitHub's OAuth web flow and REST API
//! wire contract on a local port, since the real one is out of reach. Stopped when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{node_modules, repo};

pub struct GitHub {
    child: Child,
    /// Its web URL; the API is under `/api/v3`.
    pub base: String,
}

impl GitHub {
    /// `users`: JSON of the accounts; `user`: who signs in next.
    pub fn start(client: &str, users: &str, user: &str) -> GitHub {
        node_modules();
        let dir = repo().join("tests/js");
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg(dir.join("github.mjs"))
            .args(["--client", client, "--users", users, "--user", user])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.starts_with("GITHUB_READY ") {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "github.mjs exited");
            assert!(Instant::now() < deadline, "github.mjs did not start");
        }
        GitHub {
            child,
            base: line["GITHUB_READY ".len()..].trim().to_owned(),
        }
    }

    pub fn api(&self) -> String {
        format!("{}/api/v3", self.base)
    }

    pub async fn next_user(&self, user: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/__test/next-user?user={user}", self.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Every access token it has issued.
    pub async fn tokens(&self) -> Vec<String> {
        reqwest::get(format!("{}/__test/tokens", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for GitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
