//! The Git adapter (git2 + our rustls smart-HTTP transport) against a real Git server: `git
//! http-backend` behind the loopback bridge of `mlops::cli::dev::git_http`, with Basic token
//! auth as a forge checks it (CONTRACTS §13.3, §13.5). Results are read back with the `git` CLI.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlops::adapter::git::Git2Remote;
use mlops::cli::dev::git_http::{GitHttp, GitHttpConfig, seed_bare_repo, serve};
use mlops::error::{Classify, ErrorClass, GitError};
use mlops::port::{CommitSpec, FileChange, GitAuthor, GitRemote, Pushed};
use secrecy::SecretString;

const USER: &str = "x-access-token";
const TOKEN: &str = "ghs_test_token_42";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "someone")
        .env("GIT_AUTHOR_EMAIL", "someone@example.com")
        .env("GIT_COMMITTER_NAME", "someone")
        .env("GIT_COMMITTER_EMAIL", "someone@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Server {
    _root: tempfile::TempDir,
    bare: std::path::PathBuf,
    http: GitHttp,
    url: String,
}

async fn server(before_push: Option<mlops::cli::dev::git_http::BeforePush>) -> Server {
    let root = tempfile::tempdir().expect("tmp");
    let seed = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(seed.path().join("deployments/mlflow/fraud")).expect("mkdir");
    std::fs::write(seed.path().join("README.md"), "manifests\n").expect("write");
    std::fs::write(
        seed.path()
            .join("deployments/mlflow/fraud/kustomization.yaml"),
        "resources: []\n",
    )
    .expect("write");
    let bare = seed_bare_repo(root.path(), "manifests", "main", seed.path()).expect("seed");
    let http = serve(GitHttpConfig {
        root: root.path().to_owned(),
        credentials: Some((USER.into(), TOKEN.into())),
        before_push,
    })
    .await
    .expect("serve");
    let url = format!("{}/manifests.git", http.base);
    Server {
        _root: root,
        bare,
        http,
        url,
    }
}

fn remote(s: &Server, token: &str, work: &Path) -> Git2Remote {
    Git2Remote::new(
        &s.url,
        USER,
        Some(SecretString::from(token.to_owned())),
        work,
    )
    .expect("remote")
}

fn author() -> GitAuthor {
    GitAuthor {
        name: "mlops".into(),
        email: "mlops@example.com".into(),
    }
}

fn spec(path: &str, content: &str, message: &str) -> CommitSpec {
    CommitSpec {
        branch: "main".into(),
        message: message.into(),
        author: author(),
        changes: vec![FileChange {
            path: path.into(),
            content: Some(content.as_bytes().to_vec()),
            expected: None,
        }],
    }
}

fn commits(bare: &Path) -> usize {
    git(bare, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_pushed_once_and_an_unchanged_file_makes_no_commit() {
    let s = server(None).await;
    let work = tempfile::tempdir().expect("tmp");
    let r = remote(&s, TOKEN, work.path());
    let path = "deployments/mlflow/fraud/release.yaml";
    let message = "Promote fraud v3\n\nMlops-Run-Id: run-1\nMlops-Model-Version: 3\n";
    let Pushed::Committed {
        commit,
        parent,
        attempts,
    } = r
        .commit(&spec(path, "version: 3\n", message))
        .await
        .expect("commit")
    else {
        panic!("nothing committed")
    };
    assert_eq!(attempts, 1);
    assert_eq!(git(&s.bare, &["rev-parse", "main"]).trim(), commit);
    assert_eq!(git(&s.bare, &["rev-parse", "main~1"]).trim(), parent);
    assert_eq!(
        git(&s.bare, &["show", &format!("main:{path}")]),
        "version: 3\n"
    );
    let body = git(&s.bare, &["log", "-1", "--format=%B%an <%ae>", "main"]);
    assert!(body.contains("Mlops-Run-Id: run-1"), "{body}");
    assert!(body.contains("mlops <mlops@example.com>"), "{body}");
    // Files people edit are untouched.
    assert_eq!(git(&s.bare, &["show", "main:README.md"]), "manifests\n");

    // A redelivery with the same content: no commit (also from a fresh work directory, as a
    // new Lambda container would have).
    let before = commits(&s.bare);
    let again = r.commit(&spec(path, "version: 3\n", message)).await;
    assert_eq!(again.expect("commit"), Pushed::Unchanged { head: commit });
    let fresh = tempfile::tempdir().expect("tmp");
    let again = remote(&s, TOKEN, fresh.path())
        .commit(&spec(path, "version: 3\n", message))
        .await
        .expect("commit");
    assert!(matches!(again, Pushed::Unchanged { .. }));
    assert_eq!(commits(&s.bare), before);
    assert_eq!(
        r.read_file("main", path).await.expect("read").as_deref(),
        Some(b"version: 3\n".as_slice())
    );
    assert_eq!(r.read_file("main", "nope.yaml").await.expect("read"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_models_promoted_concurrently_both_land() {
    let s = server(None).await;
    let before = commits(&s.bare);
    let w1 = tempfile::tempdir().expect("tmp");
    let w2 = tempfile::tempdir().expect("tmp");
    let shared = tempfile::tempdir().expect("tmp");
    // Two "containers" with their own clones, and two invocations sharing one clone.
    let remotes = [
        remote(&s, TOKEN, w1.path()),
        remote(&s, TOKEN, w2.path()),
        remote(&s, TOKEN, shared.path()),
        remote(&s, TOKEN, shared.path()),
    ];
    let runs = remotes.iter().enumerate().map(|(i, r)| async move {
        r.commit(&spec(
            &format!("deployments/vllm/model-{i}/release.yaml"),
            &format!("model: {i}\n"),
            &format!("Promote model-{i}"),
        ))
        .await
    });
    let results = futures::future::join_all(runs).await;
    for r in &results {
        assert!(matches!(r, Ok(Pushed::Committed { .. })), "{results:?}");
    }
    assert_eq!(commits(&s.bare), before + 4, "nothing lost");
    for i in 0..4 {
        assert_eq!(
            git(
                &s.bare,
                &[
                    "show",
                    &format!("main:deployments/vllm/model-{i}/release.yaml")
                ]
            ),
            format!("model: {i}\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_landing_between_fetch_and_push_is_fetched_and_the_change_reapplied() {
    // Before the first push reaches git, someone else's commit lands on main.
    let pushes = Arc::new(AtomicUsize::new(0));
    let seen = pushes.clone();
    let hook: mlops::cli::dev::git_http::BeforePush = Arc::new(move |bare: &Path| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let work = tempfile::tempdir().expect("tmp");
            let dir = work.path().display().to_string();
            git(
                Path::new("/"),
                &["clone", "-q", &bare.display().to_string(), &dir],
            );
            std::fs::write(work.path().join("README.md"), "edited by a person\n").expect("w");
            git(
                work.path(),
                &["commit", "-qam", "A person edits the README"],
            );
            git(work.path(), &["push", "-q", "origin", "main"]);
        }
    });
    let s = server(Some(hook)).await;
    let work = tempfile::tempdir().expect("tmp");
    let r = remote(&s, TOKEN, work.path());
    let out = r
        .commit(&spec(
            "deployments/mlflow/fraud/release.yaml",
            "v: 4\n",
            "Promote v4",
        ))
        .await
        .expect("commit");
    let Pushed::Committed {
        commit,
        parent,
        attempts,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(attempts, 2, "one lost race, one retry");
    assert_eq!(git(&s.bare, &["rev-parse", "main"]).trim(), commit);
    // Our commit sits on top of the person's, and both changes are there.
    assert_eq!(
        git(&s.bare, &["log", "-1", "--format=%s", &parent]).trim(),
        "A person edits the README"
    );
    assert_eq!(
        git(&s.bare, &["show", "main:README.md"]),
        "edited by a person\n"
    );
    assert_eq!(
        git(
            &s.bare,
            &["show", "main:deployments/mlflow/fraud/release.yaml"]
        ),
        "v: 4\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_server_refuses_is_a_permanent_error_without_retries() {
    let s = server(None).await;
    let work = tempfile::tempdir().expect("tmp");
    let before = commits(&s.bare);
    let err = remote(&s, "wrong-token", work.path())
        .commit(&spec("x.yaml", "x\n", "x"))
        .await
        .expect_err("refused");
    assert!(matches!(err, GitError::Refused { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("403"), "{text}");
    assert!(!text.contains("wrong-token"), "the token leaked: {text}");
    // One refused request, no retry storm.
    assert!(s.http.requests.load(Ordering::SeqCst) <= 2);
    assert_eq!(commits(&s.bare), before);

    // No token at all: 401, also permanent.
    let anon = Git2Remote::new(&s.url, USER, None, work.path()).expect("remote");
    let err = anon.read_file("main", "README.md").await.expect_err("401");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);

    // A branch that does not exist is permanent too; a server that is gone is transient.
    let r = remote(&s, TOKEN, work.path());
    let err = r
        .read_file("nope", "README.md")
        .await
        .expect_err("no branch");
    assert!(matches!(err, GitError::NoBranch { .. }), "{err:?}");
    let gone = Git2Remote::new(
        "http://127.0.0.1:9/manifests.git",
        USER,
        Some(SecretString::from(TOKEN.to_owned())),
        work.path(),
    )
    .expect("remote");
    let err = gone.read_file("main", "README.md").await.expect_err("down");
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_is_reverted_once() {
    let s = server(None).await;
    let work = tempfile::tempdir().expect("tmp");
    let r = remote(&s, TOKEN, work.path());
    let path = "deployments/mlflow/fraud/release.yaml";
    r.commit(&spec(path, "v: 1\n", "Promote v1"))
        .await
        .expect("v1");
    let Pushed::Committed { commit: bad, .. } = r
        .commit(&spec(path, "v: 2\n", "Promote v2"))
        .await
        .expect("v2")
    else {
        panic!("v2 not committed")
    };
    // A person's commit after it, on another file: the revert keeps it.
    r.commit(&spec("README.md", "later\n", "A later edit"))
        .await
        .expect("later");
    let message =
        format!("Roll back fraud v2\n\nThis reverts commit {bad}.\nMlops-Rollback-Of: {bad}\n");
    let out = r
        .revert("main", &bad, &message, &author())
        .await
        .expect("revert");
    assert!(matches!(out, Pushed::Committed { .. }), "{out:?}");
    assert_eq!(git(&s.bare, &["show", &format!("main:{path}")]), "v: 1\n");
    assert_eq!(git(&s.bare, &["show", "main:README.md"]), "later\n");
    // Reverting again changes nothing.
    let before = commits(&s.bare);
    let again = r
        .revert("main", &bad, &message, &author())
        .await
        .expect("revert");
    assert!(matches!(again, Pushed::Unchanged { .. }), "{again:?}");
    assert_eq!(commits(&s.bare), before);
    // A commit that is not on the branch is refused, permanently.
    let err = r
        .revert(
            "main",
            "0123456789abcdef0123456789abcdef01234567",
            "x",
            &author(),
        )
        .await
        .expect_err("unknown");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_swap_change_is_refused_once_the_file_moved_even_inside_a_push_race() {
    // Before the first push reaches git, someone else changes the very file we decided on.
    let pushes = Arc::new(AtomicUsize::new(0));
    let seen = pushes.clone();
    let path = "deployments/mlflow/fraud/kustomization.yaml";
    let hook: mlops::cli::dev::git_http::BeforePush = Arc::new(move |bare: &Path| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let work = tempfile::tempdir().expect("tmp");
            let dir = work.path().display().to_string();
            git(
                Path::new("/"),
                &["clone", "-q", &bare.display().to_string(), &dir],
            );
            std::fs::write(work.path().join(path), "resources: [newer]\n").expect("w");
            git(
                work.path(),
                &["commit", "-qam", "Someone releases a newer version"],
            );
            git(work.path(), &["push", "-q", "origin", "main"]);
        }
    });
    let s = server(Some(hook)).await;
    let work = tempfile::tempdir().expect("tmp");
    let r = remote(&s, TOKEN, work.path());
    let read = r.read_file("main", path).await.expect("read");
    assert_eq!(read.as_deref(), Some(b"resources: []\n".as_slice()));
    let mut cas = spec(path, "resources: [older]\n", "Decided on what was read");
    cas.changes[0].expected = Some(read);
    let err = r.commit(&cas).await.expect_err("stale");
    assert!(matches!(err, GitError::Stale { .. }), "{err:?}");
    assert_eq!(
        err.class(),
        ErrorClass::Transient,
        "retried, and decided again"
    );
    assert_eq!(
        git(&s.bare, &["show", &format!("main:{path}")]),
        "resources: [newer]\n"
    );

    // Decided on the current content, it applies; expecting absence of an existing file fails.
    let now = r.read_file("main", path).await.expect("read");
    let mut cas = spec(path, "resources: [newest]\n", "Decided on the new content");
    cas.changes[0].expected = Some(now);
    assert!(matches!(r.commit(&cas).await, Ok(Pushed::Committed { .. })));
    let mut absent = spec(path, "x\n", "Expects no file");
    absent.changes[0].expected = Some(None);
    assert!(matches!(
        r.commit(&absent).await,
        Err(GitError::Stale { .. })
    ));
}
