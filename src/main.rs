//! The `mlops` command-line tool.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match mlops::cli::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
