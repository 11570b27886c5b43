//! Spawns `moto_server` on a free loopback port and stops it when dropped (or when this process
//! dies: the wrapper shell kills moto as soon as its stdin, our pipe, closes).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

pub struct Moto {
    pub endpoint: String,
    child: Child,
    stdin: Option<ChildStdin>,
}

/// Finds `moto_server`: `$MLOPS_MOTO_SERVER`, else `.venv/bin/moto_server` in `root` or a parent
/// of the current directory, else `PATH`.
pub fn find_moto(root: Option<&Path>) -> PathBuf {
    if let Ok(p) = std::env::var("MLOPS_MOTO_SERVER") {
        return p.into();
    }
    let mut dirs: Vec<PathBuf> = root.map(Path::to_path_buf).into_iter().collect();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    dirs.into_iter()
        .map(|d| d.join(".venv/bin/moto_server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "moto_server".into())
}

/// Spawns `program args…` behind a shell that kills it as soon as its stdin (our pipe) closes,
/// so the service dies with this process even when it is killed. Output goes to `stdout`.
pub fn spawn_guarded(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: Stdio,
) -> anyhow::Result<(Child, Option<ChildStdin>)> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" "$@" 2>&1 & pid=$!; read _; kill $pid"#)
        .arg(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (run scripts/venv.sh to install it)",
                program.display()
            )
        })?;
    let stdin = child.stdin.take();
    Ok((child, stdin))
}

impl Moto {
    pub fn start(bin: &Path) -> anyhow::Result<Moto> {
        let (mut child, stdin) =
            spawn_guarded(bin, &["-H", "127.0.0.1", "-p", "0"], &[], Stdio::piped())?;
        let stdout = child.stdout.take().context("moto stdout")?;
        let (tx, rx) = mpsc::channel();
        // Drain moto's request log for its whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1)
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(port.trim().trim_end_matches('/').to_owned());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                bail!("{} did not report its port within 30 s", bin.display());
            }
        };
        Ok(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            stdin,
        })
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
