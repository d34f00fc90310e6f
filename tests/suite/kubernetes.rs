//! The Kubernetes examples, offline: every overlay renders with `kubectl kustomize`, validates
//! strictly against the schemas of the oldest and newest supported Kubernetes versions
//! (`kubernetes-validate`, PyPI), and keeps what it promises (restricted Pod Security, probes
//! on the admin port, policy from a ConfigMap, secrets as files); the router's nginx config
//! passes `nginx -t`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::TempDir;
use crate::support::lb::system_bin;
use crate::support::{python, repo};

const OVERLAYS: &[&str] = &["single", "injected", "replicas"];
/// Oldest: the first release with `preStop.sleep` on by default. Newest: the newest schema
/// kubernetes-validate ships.
const VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `kubectl kustomize` of each overlay, written to `dir`.
fn render(dir: &Path) -> Vec<PathBuf> {
    let kubectl = std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .expect("kubectl (with its built-in kustomize) is not installed");
    OVERLAYS
        .iter()
        .map(|o| {
            let out = run(
                Command::new(&kubectl)
                    .arg("kustomize")
                    .arg(repo().join("examples/kubernetes/overlays").join(o)),
                None,
            );
            assert!(out.status.success(), "kustomize {o}: {}", text(&out));
            let path = dir.join(format!("{o}.yaml"));
            std::fs::write(&path, &out.stdout).unwrap();
            path
        })
        .collect()
}

fn check_manifests(files: &[PathBuf]) -> Output {
    run(
        Command::new(python())
            .arg(repo().join("tests/py/check_manifests.py"))
            .args(files),
        None,
    )
}

#[test]
fn every_overlay_validates_strictly_at_the_oldest_and_newest_kubernetes() {
    let dir = TempDir::new("k8s");
    let files = render(dir.dir());
    let validate = python().with_file_name("kubernetes-validate");
    for v in VERSIONS {
        let out = run(
            Command::new(&validate)
                .args(["--strict", "--quiet", "-k", v])
                .args(&files),
            None,
        );
        assert!(out.status.success(), "Kubernetes {v}: {}", text(&out));
    }
    // The validator is strict for real: a misspelt field fails.
    let broken = std::fs::read_to_string(&files[0])
        .unwrap()
        .replace("readOnlyRootFilesystem", "readOnlyRootFilesytem");
    let out = run(
        Command::new(&validate).args(["--strict", "--quiet", "-k", VERSIONS[0], "-"]),
        Some(&broken),
    );
    assert!(!out.status.success(), "a misspelt field passed");
}

#[test]
fn every_pod_meets_restricted_pod_security_and_the_warden_contract() {
    let dir = TempDir::new("k8s-pss");
    let files = render(dir.dir());
    let out = check_manifests(&files);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    for workload in [
        "Deployment/mcp-warden: 1 containers",
        "Deployment/mcp-warden: 2 containers",
        "StatefulSet/mcp-warden",
        "Deployment/mcp-warden-router",
    ] {
        assert!(
            report.contains(workload),
            "{workload} not checked:\n{report}"
        );
    }

    // Each weakening is caught.
    let original = std::fs::read_to_string(&files[1]).unwrap();
    for (from, to, violation) in [
        (
            "allowPrivilegeEscalation: false",
            "allowPrivilegeEscalation: true",
            "allowPrivilegeEscalation",
        ),
        ("type: RuntimeDefault", "type: Unconfined", "seccompProfile"),
        (
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
            "readOnlyRootFilesystem",
        ),
        ("- ALL", "- NET_RAW", "capabilities.drop"),
        ("runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"),
        // The pod's own setting (the ServiceAccount's comes first in the file).
        (
            "\n      automountServiceAccountToken: false",
            "\n      automountServiceAccountToken: true",
            "automountServiceAccountToken",
        ),
        ("path: /healthz", "path: /mcp", "livenessProbe"),
    ] {
        assert!(
            original.contains(from),
            "{from:?} not in the rendered overlay"
        );
        let weakened = dir.dir().join("weakened.yaml");
        std::fs::write(&weakened, original.replacen(from, to, 1)).unwrap();
        let out = check_manifests(&[weakened]);
        let report = text(&out);
        assert!(
            !out.status.success() && report.contains(violation),
            "{from:?} → {to:?} not reported:\n{report}"
        );
    }
}

#[test]
fn the_router_config_passes_nginx_t() {
    let dir = TempDir::new("k8s-router");
    let d = dir.dir().display().to_string();
    // The cluster's DNS is not here: any resolver address lets nginx check the rest.
    let site =
        std::fs::read_to_string(repo().join("examples/kubernetes/overlays/replicas/router.conf"))
            .unwrap()
            .replace("kube-dns.kube-system.svc.cluster.local", "127.0.0.1");
    std::fs::write(dir.dir().join("router.conf"), site).unwrap();
    std::fs::write(
        dir.dir().join("nginx.conf"),
        format!(
            "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/router.conf;\n}}\n"
        ),
    )
    .unwrap();
    let out = run(
        Command::new(system_bin("nginx"))
            .args(["-t", "-p", &d, "-e", &format!("{d}/error.log"), "-c"])
            .arg(dir.dir().join("nginx.conf")),
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
}
