//! A real Git server on loopback for the dev stack and the tests: `git http-backend` (the CGI
//! program that ships with git) behind a small hyper bridge, serving every repository under a
//! root over smart HTTP (CONTRACTS §13.5). Optional Basic credentials are checked like a forge
//! does (401 with `WWW-Authenticate` when missing, 403 when wrong), and a hook can run before
//! each push is handed to git (the tests use it to land a competing commit first).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

/// Runs before a push (`POST …/git-receive-pack`) reaches git, with the repository's path.
pub type BeforePush = Arc<dyn Fn(&Path) + Send + Sync>;

#[derive(Clone, Default)]
pub struct GitHttpConfig {
    /// `GIT_PROJECT_ROOT`: `http://…/<name>.git` serves `<root>/<name>.git`.
    pub root: PathBuf,
    /// (user, token) every request must carry as Basic auth; `None` serves anyone.
    pub credentials: Option<(String, String)>,
    pub before_push: Option<BeforePush>,
}

pub struct GitHttp {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Requests served so far (the tests check that a refused token causes no retry storm).
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `config.root` on 127.0.0.1 (any free port) until the returned value is dropped.
pub async fn serve(config: GitHttpConfig) -> std::io::Result<GitHttp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let config = Arc::new(config);
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let config = config.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let config = config.clone();
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async move { Ok::<_, Infallible>(handle(&config, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(GitHttp {
        base: format!("http://{addr}"),
        requests,
        task,
    })
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r
}

async fn handle(config: &GitHttpConfig, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let user = match &config.credentials {
        None => "dev".to_owned(),
        Some((user, token)) => {
            let Some(auth) = header("authorization") else {
                let mut r = reply(StatusCode::UNAUTHORIZED, "authentication required");
                r.headers_mut().insert(
                    "www-authenticate",
                    hyper::header::HeaderValue::from_static("Basic realm=\"git\""),
                );
                return r;
            };
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
            );
            if auth != expected {
                return reply(StatusCode::FORBIDDEN, "invalid credentials");
            }
            user.clone()
        }
    };
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = header("content-type").unwrap_or_default();
    let encoding = header("content-encoding");
    let protocol = header("git-protocol");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if method == "POST"
        && path.ends_with("/git-receive-pack")
        && let Some(hook) = &config.before_push
    {
        let repo = config.root.join(
            path.trim_start_matches('/')
                .trim_end_matches("/git-receive-pack"),
        );
        let hook = hook.clone();
        let _ = tokio::task::spawn_blocking(move || hook(&repo)).await;
    }
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        // A non-empty REMOTE_USER turns receive-pack on (http-backend's select_service).
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(e) = encoding {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    if let Some(p) = protocol {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("git http-backend: {e}"),
            );
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&body).await;
    }
    let out = match child.wait_with_output().await {
        Ok(o) => o,
        Err(e) => return reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    cgi_response(&out.stdout)
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn cgi_response(out: &[u8]) -> Response<Full<Bytes>> {
    let (head, body) = match find(out, b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match find(out, b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => (&out[..0], out),
        },
    };
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body)));
    for line in String::from_utf8_lossy(head).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            if let Some(code) = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                *r.status_mut() = code;
            }
        } else if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.trim().as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Creates a bare repository `<root>/<name>.git` whose `branch` holds the files of `seed`
/// (a directory copied as is), committed by `git` itself. Returns the repository's path.
pub fn seed_bare_repo(
    root: &Path,
    name: &str,
    branch: &str,
    seed: &Path,
) -> anyhow::Result<PathBuf> {
    let bare = root.join(format!("{name}.git"));
    let work = tempfile::tempdir()?;
    copy_dir(seed, work.path())?;
    let git = |dir: &Path, args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "seed")
            .env("GIT_AUTHOR_EMAIL", "seed@example.com")
            .env("GIT_COMMITTER_NAME", "seed")
            .env("GIT_COMMITTER_EMAIL", "seed@example.com")
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    git(work.path(), &["init", "-q", "-b", branch])?;
    git(work.path(), &["add", "-A"])?;
    git(work.path(), &["commit", "-q", "-m", "Seed the repository"])?;
    std::fs::create_dir_all(root)?;
    git(
        root,
        &[
            "clone",
            "-q",
            "--bare",
            &work.path().display().to_string(),
            &bare.display().to_string(),
        ],
    )?;
    Ok(bare)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The file the `post-receive` hook of a repository made by [`install_push_spool`] appends to:
/// one `<old> <new> <ref>` line per updated ref (git's own hook input).
pub const PUSH_SPOOL: &str = "mlops-pushes.log";

/// Installs a `post-receive` hook in `bare` that records every push in [`PUSH_SPOOL`], from
/// which the dev stack delivers GitHub-format push webhooks. Returns the spool's path.
pub fn install_push_spool(bare: &Path) -> std::io::Result<PathBuf> {
    let hook = bare.join("hooks/post-receive");
    std::fs::create_dir_all(bare.join("hooks"))?;
    std::fs::write(&hook, format!("#!/bin/sh\ncat >> {PUSH_SPOOL}\n"))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    Ok(bare.join(PUSH_SPOOL))
}

/// A GitHub `push` webhook payload (CONTRACTS §8.1: `ref`, `before`, `after`, `commits[]` oldest
/// first with `added`/`modified`/`removed`, `head_commit`, `repository`) for a ref update of
/// `bare`, built from the repository itself.
pub fn github_push_payload(
    bare: &Path,
    old: &str,
    new: &str,
    refname: &str,
    repo_url: &str,
) -> anyhow::Result<Vec<u8>> {
    let repo = git2::Repository::open_bare(bare)?;
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let mut commits = Vec::new();
    if !zero(new) {
        let mut walk = repo.revwalk()?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        walk.push(git2::Oid::from_str(new)?)?;
        if !zero(old) {
            walk.hide(git2::Oid::from_str(old)?)?;
        }
        for id in walk {
            let c = repo.find_commit(id?)?;
            let parent_tree = match c.parent(0) {
                Ok(p) => Some(p.tree()?),
                Err(_) => None,
            };
            let diff = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&c.tree()?), None)?;
            let (mut added, mut modified, mut removed) = (vec![], vec![], vec![]);
            for d in diff.deltas() {
                let path = d
                    .new_file()
                    .path()
                    .or_else(|| d.old_file().path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                match d.status() {
                    git2::Delta::Added => added.push(path),
                    git2::Delta::Deleted => removed.push(path),
                    _ => modified.push(path),
                }
            }
            commits.push(serde_json::json!({
                "id": c.id().to_string(),
                "tree_id": c.tree_id().to_string(),
                "distinct": true,
                "message": c.message().unwrap_or_default(),
                "timestamp": chrono::DateTime::from_timestamp(c.time().seconds(), 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                "author": {"name": c.author().name().unwrap_or_default(),
                           "email": c.author().email().unwrap_or_default()},
                "added": added,
                "modified": modified,
                "removed": removed,
            }));
        }
    }
    let body = serde_json::json!({
        "ref": refname,
        "before": old,
        "after": new,
        "created": zero(old),
        "deleted": zero(new),
        "forced": false,
        "head_commit": commits.last().cloned(),
        "commits": commits,
        "pusher": {"name": "dev", "email": "dev@localhost"},
        "repository": {"clone_url": repo_url, "html_url": repo_url.trim_end_matches(".git")},
    });
    Ok(serde_json::to_vec(&body)?)
}
