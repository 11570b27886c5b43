//! The deployment stage: a validated model reaches serving only through Git (the release file
//! of the GitOps manifests repo), and Argo CD deploys it.

pub mod health;
pub mod promote;
pub mod push;
pub mod receive;
pub mod release;
pub mod sync;
