//! [`GitRemote`] over HTTPS with libgit2 (git2, no OpenSSL: our rustls transport in
//! [`transport`]). Each operation works in a bare repository under the work directory (one per
//! remote, reused while the Lambda container lives): fetch the branch into a private ref,
//! build the new tree from the fetched tip, commit with that tip as parent, push without force.
//! A push that loses a race (the server's branch moved: `NotFastForward`, or a rejected ref
//! update) fetches again and re-applies the same change on the new tip, a bounded number of
//! times (CONTRACTS §13.4).

pub mod transport;

use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{FetchOptions, ObjectType, Oid, PushOptions, RemoteCallbacks, Repository, Signature};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::GitError;
use crate::port::{CommitSpec, FileChange, GitAuthor, GitRemote, Pushed};

/// Pushes that may lose a race before the operation reports a transient failure.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct Git2Remote {
    /// The repository URL, without credentials.
    url: String,
    username: String,
    token: Option<SecretString>,
    work_dir: PathBuf,
}

impl std::fmt::Debug for Git2Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Git2Remote")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Git2Remote {
    /// `username` is what the host expects with a token (GitHub `x-access-token`, GitLab
    /// `oauth2`; CONTRACTS §13.3); `work_dir` holds the bare clone (`/tmp` in a Lambda).
    pub fn new(
        url: &str,
        username: &str,
        token: Option<SecretString>,
        work_dir: &Path,
    ) -> Result<Git2Remote, GitError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| GitError::BadRemote {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(GitError::BadRemote {
                url: url.to_owned(),
                reason: "only https:// (and http:// for local servers) remotes are supported"
                    .into(),
            });
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(GitError::BadRemote {
                url: format!(
                    "{}://{}",
                    parsed.scheme(),
                    parsed.host_str().unwrap_or_default()
                ),
                reason: "put the token in the secret, not in the URL".into(),
            });
        }
        transport::register();
        Ok(Git2Remote {
            url: url.to_owned(),
            username: username.to_owned(),
            token,
            work_dir: work_dir.to_owned(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL libgit2 is given: with the credentials our transport turns into a header.
    fn authed_url(&self) -> String {
        let Some(token) = &self.token else {
            return self.url.clone();
        };
        let Ok(mut u) = reqwest::Url::parse(&self.url) else {
            return self.url.clone();
        };
        let _ = u.set_username(&self.username);
        let _ = u.set_password(Some(token.expose_secret()));
        u.to_string()
    }

    /// A git2 error with the token (if libgit2 ever echoes the URL) masked.
    fn err(&self, op: &'static str, e: &git2::Error) -> GitError {
        let mut message = e.message().to_owned();
        if let Some(t) = &self.token
            && !t.expose_secret().is_empty()
        {
            message = message.replace(t.expose_secret(), "***");
        }
        if message.contains(transport::REFUSED_MARKER) {
            GitError::Refused {
                remote: self.url.clone(),
                message,
            }
        } else {
            GitError::Git {
                remote: self.url.clone(),
                op,
                message,
            }
        }
    }

    fn open(&self) -> Result<Repository, GitError> {
        let mut h = Sha256::new();
        h.update(self.url.as_bytes());
        let dir = self
            .work_dir
            .join(format!("git-{}.git", &hex::encode(h.finalize())[..16]));
        if let Ok(r) = Repository::open_bare(&dir) {
            return Ok(r);
        }
        // Concurrent operations of one container share the clone: one of them creates it.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match Repository::open_bare(&dir) {
            Ok(r) => Ok(r),
            Err(_) => {
                std::fs::create_dir_all(&self.work_dir).map_err(|e| GitError::Git {
                    remote: self.url.clone(),
                    op: "creating the work directory",
                    message: e.to_string(),
                })?;
                Repository::init_bare(&dir).map_err(|e| self.err("init", &e))
            }
        }
    }

    /// Fetches `branch` and returns its tip.
    fn fetch(&self, repo: &Repository, branch: &str) -> Result<Oid, GitError> {
        let private = format!("refs/mlops/fetch/{}", uuid::Uuid::new_v4().simple());
        let mut remote = repo
            .remote_anonymous(&self.authed_url())
            .map_err(|e| self.err("remote", &e))?;
        let mut opts = FetchOptions::new();
        opts.download_tags(git2::AutotagOption::None);
        remote
            .fetch(
                &[format!("+refs/heads/{branch}:{private}")],
                Some(&mut opts),
                None,
            )
            .map_err(|e| self.err("fetch", &e))?;
        let tip = match repo.find_reference(&private) {
            Ok(mut r) => {
                let oid = r.target();
                let _ = r.delete();
                oid
            }
            Err(_) => None,
        };
        tip.ok_or_else(|| GitError::NoBranch {
            remote: self.url.clone(),
            branch: branch.to_owned(),
        })
    }

    /// Pushes `commit` to `branch`; `Ok(false)` when the branch moved (a lost race).
    fn push(&self, repo: &Repository, commit: Oid, branch: &str) -> Result<bool, GitError> {
        let private = format!("refs/mlops/push/{}", uuid::Uuid::new_v4().simple());
        let mut tmp = repo
            .reference(&private, commit, true, "push")
            .map_err(|e| self.err("push", &e))?;
        let mut rejected: Option<String> = None;
        let result = {
            let mut callbacks = RemoteCallbacks::new();
            callbacks.push_update_reference(|_refname, status| {
                if let Some(s) = status {
                    rejected = Some(s.to_owned());
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(callbacks);
            let mut remote = repo
                .remote_anonymous(&self.authed_url())
                .map_err(|e| self.err("remote", &e))?;
            remote.push(&[format!("{private}:refs/heads/{branch}")], Some(&mut opts))
        };
        let _ = tmp.delete();
        match result {
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => Ok(false),
            Err(e) => Err(self.err("push", &e)),
            Ok(()) => match rejected {
                None => Ok(true),
                Some(status) => {
                    tracing::info!(%branch, %status, "push rejected; fetching and retrying");
                    Ok(false)
                }
            },
        }
    }

    /// The fetch → build → commit → push loop. `build` returns the tree for the new commit
    /// from the tip, or `None` when the tip already has the change.
    fn publish(
        &self,
        branch: &str,
        message: &str,
        author: &GitAuthor,
        build: impl Fn(&Repository, &git2::Commit<'_>) -> Result<Option<Oid>, GitError>,
    ) -> Result<Pushed, GitError> {
        let repo = self.open()?;
        for attempt in 1..=MAX_ATTEMPTS {
            let tip_id = self.fetch(&repo, branch)?;
            let tip = repo
                .find_commit(tip_id)
                .map_err(|e| self.err("reading the tip", &e))?;
            let Some(tree_id) = build(&repo, &tip)? else {
                return Ok(Pushed::Unchanged {
                    head: tip_id.to_string(),
                });
            };
            let tree = repo
                .find_tree(tree_id)
                .map_err(|e| self.err("reading the tree", &e))?;
            let sig = Signature::now(&author.name, &author.email)
                .map_err(|e| self.err("signature", &e))?;
            let commit = repo
                .commit(None, &sig, &sig, message, &tree, &[&tip])
                .map_err(|e| self.err("commit", &e))?;
            if self.push(&repo, commit, branch)? {
                return Ok(Pushed::Committed {
                    commit: commit.to_string(),
                    parent: tip_id.to_string(),
                    attempts: attempt,
                });
            }
            std::thread::sleep(Duration::from_millis(50 * u64::from(attempt * attempt)));
        }
        Err(GitError::Contended {
            remote: self.url.clone(),
            branch: branch.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn read_blocking(&self, branch: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let repo = self.open()?;
        let tip = self.fetch(&repo, branch)?;
        let tree = repo
            .find_commit(tip)
            .and_then(|c| c.tree())
            .map_err(|e| self.err("reading the tip", &e))?;
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        let obj = entry
            .to_object(&repo)
            .map_err(|e| self.err("reading a file", &e))?;
        Ok(obj.as_blob().map(|b| b.content().to_vec()))
    }

    fn commit_blocking(&self, spec: &CommitSpec) -> Result<Pushed, GitError> {
        for c in &spec.changes {
            check_path(&c.path)?;
        }
        self.publish(
            &spec.branch,
            &spec.message,
            &spec.author,
            |repo, tip| match apply(repo, tip, &spec.changes) {
                Ok(Applied::Tree(t)) => Ok(t),
                Ok(Applied::Stale(path)) => Err(GitError::Stale {
                    remote: self.url.clone(),
                    path,
                }),
                Err(e) => Err(self.err("building the tree", &e)),
            },
        )
    }

    fn revert_blocking(
        &self,
        branch: &str,
        commit: &str,
        message: &str,
        author: &GitAuthor,
    ) -> Result<Pushed, GitError> {
        let target = Oid::from_str(commit).map_err(|_| GitError::UnknownCommit {
            remote: self.url.clone(),
            commit: commit.to_owned(),
        })?;
        self.publish(branch, message, author, |repo, tip| {
            let bad = repo
                .find_commit(target)
                .map_err(|_| GitError::UnknownCommit {
                    remote: self.url.clone(),
                    commit: commit.to_owned(),
                })?;
            let on_branch = tip.id() == target
                || repo
                    .graph_descendant_of(tip.id(), target)
                    .map_err(|e| self.err("walking history", &e))?;
            if !on_branch {
                return Err(GitError::UnknownCommit {
                    remote: self.url.clone(),
                    commit: commit.to_owned(),
                });
            }
            let mut index = repo
                .revert_commit(&bad, tip, 0, None)
                .map_err(|e| self.err("revert", &e))?;
            if index.has_conflicts() {
                return Err(GitError::Conflict {
                    remote: self.url.clone(),
                    commit: commit.to_owned(),
                });
            }
            let tree = index
                .write_tree_to(repo)
                .map_err(|e| self.err("revert", &e))?;
            Ok((tree != tip.tree_id()).then_some(tree))
        })
    }
}

/// Paths are relative, `/`-separated, without `.`/`..` or empty components.
fn check_path(path: &str) -> Result<(), GitError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c != ".git");
    if ok {
        Ok(())
    } else {
        Err(GitError::BadPath {
            path: path.to_owned(),
        })
    }
}

enum Applied {
    /// The new tree, or `None` when the tip already has the changes.
    Tree(Option<Oid>),
    /// A compare-and-swap change found this path changed.
    Stale(String),
}

/// The tip's tree with `changes` applied.
fn apply(
    repo: &Repository,
    tip: &git2::Commit<'_>,
    changes: &[FileChange],
) -> Result<Applied, git2::Error> {
    let base = tip.tree()?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    let mut changed = false;
    for c in changes {
        let current = base
            .get_path(Path::new(&c.path))
            .ok()
            .filter(|e| e.kind() == Some(ObjectType::Blob))
            .and_then(|e| repo.find_blob(e.id()).ok().map(|b| b.content().to_vec()));
        if c.expected.as_ref().is_some_and(|want| *want != current) {
            return Ok(Applied::Stale(c.path.clone()));
        }
        match &c.content {
            Some(content) if current.as_deref() != Some(content.as_slice()) => {
                let blob = repo.blob(content)?;
                update.upsert(&c.path, blob, git2::FileMode::Blob);
                changed = true;
            }
            None if current.is_some() => {
                update.remove(&c.path);
                changed = true;
            }
            _ => {}
        }
    }
    if !changed {
        return Ok(Applied::Tree(None));
    }
    Ok(Applied::Tree(Some(update.create_updated(repo, &base)?)))
}

impl GitRemote for Git2Remote {
    async fn read_file(&self, branch: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        check_path(path)?;
        let (this, branch, path) = (self.clone(), branch.to_owned(), path.to_owned());
        tokio::task::spawn_blocking(move || this.read_blocking(&branch, &path))
            .await
            .map_err(GitError::Task)?
    }

    async fn commit(&self, spec: &CommitSpec) -> Result<Pushed, GitError> {
        let (this, spec) = (self.clone(), spec.clone());
        tokio::task::spawn_blocking(move || this.commit_blocking(&spec))
            .await
            .map_err(GitError::Task)?
    }

    async fn revert(
        &self,
        branch: &str,
        commit: &str,
        message: &str,
        author: &GitAuthor,
    ) -> Result<Pushed, GitError> {
        let this = self.clone();
        let (branch, commit, message, author) = (
            branch.to_owned(),
            commit.to_owned(),
            message.to_owned(),
            author.clone(),
        );
        tokio::task::spawn_blocking(move || {
            this.revert_blocking(&branch, &commit, &message, &author)
        })
        .await
        .map_err(GitError::Task)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "./a",
            "a//b",
            ".git/config",
            "a\\b",
            "a/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        for good in [
            "release.yaml",
            "deployments/vllm/m/release.yaml",
            ".gitignore",
        ] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn tokens_never_reach_debug_or_the_url_field() {
        let r = Git2Remote::new(
            "https://git.example.com/org/manifests.git",
            "x-access-token",
            Some(SecretString::from("ghs_secret".to_owned())),
            Path::new("/tmp"),
        )
        .expect("remote");
        assert!(!format!("{r:?}").contains("ghs_secret"));
        assert_eq!(r.url(), "https://git.example.com/org/manifests.git");
        assert!(r.authed_url().contains("x-access-token:ghs_secret@"));
        assert!(Git2Remote::new("https://u:p@h/r.git", "x", None, Path::new("/tmp")).is_err());
        assert!(Git2Remote::new("ssh://h/r.git", "x", None, Path::new("/tmp")).is_err());
    }
}
