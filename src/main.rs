//! The `mlops` command-line tool.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One process-wide rustls provider before any client (AWS SDK, MLflow, kube) is built.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match mlops::cli::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
