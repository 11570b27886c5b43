//! [`ImageRegistry`] on Amazon ECR (aws-sdk-ecr): `DescribeImages` for "is this commit built
//! already", `GetAuthorizationToken` for the 12-hour token the build pod pushes with
//! (CONTRACTS §14.3: base64 of `AWS:<password>`, valid for 12 hours, with the caller's rights).

use aws_sdk_ecr::Client;
use aws_sdk_ecr::types::ImageIdentifier;

use crate::config::ecr_repository;
use crate::port::{ImageRegistry, ImageRegistryError, PushCredentials, SecretValue};

#[derive(Clone)]
pub struct EcrRegistry {
    client: Client,
}

impl EcrRegistry {
    pub fn new(client: Client) -> Self {
        EcrRegistry { client }
    }
}

fn split(op: &'static str, repository: &str) -> Result<(String, String), ImageRegistryError> {
    let (host, name) = ecr_repository(repository).ok_or_else(|| ImageRegistryError::Refused {
        op,
        message: format!("{repository:?} is not an ECR repository URI"),
    })?;
    let account = host.split('.').next().unwrap_or_default().to_owned();
    Ok((account, name.to_owned()))
}

impl ImageRegistry for EcrRegistry {
    async fn image_digest(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<String>, ImageRegistryError> {
        const OP: &str = "ecr:DescribeImages";
        let (account, name) = split(OP, repository)?;
        let out = self
            .client
            .describe_images()
            .registry_id(account)
            .repository_name(&name)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        match out {
            Ok(o) => Ok(o
                .image_details()
                .iter()
                .find_map(|d| d.image_digest().map(str::to_owned))),
            Err(e) => {
                let Some(s) = e.as_service_error() else {
                    return Err(ImageRegistryError::Unavailable {
                        op: OP,
                        source: Box::new(e),
                    });
                };
                if s.is_image_not_found_exception() {
                    Ok(None)
                } else if s.is_repository_not_found_exception() {
                    Err(ImageRegistryError::Refused {
                        op: OP,
                        message: format!("repository {name} does not exist"),
                    })
                } else if s.meta().code() == Some("AccessDeniedException") {
                    Err(ImageRegistryError::Refused {
                        op: OP,
                        message: s.meta().message().unwrap_or("access denied").to_owned(),
                    })
                } else {
                    Err(ImageRegistryError::Unavailable {
                        op: OP,
                        source: Box::new(e),
                    })
                }
            }
        }
    }

    async fn push_credentials(
        &self,
        repository: &str,
    ) -> Result<PushCredentials, ImageRegistryError> {
        const OP: &str = "ecr:GetAuthorizationToken";
        let (host, _) = ecr_repository(repository).ok_or_else(|| ImageRegistryError::Refused {
            op: OP,
            message: format!("{repository:?} is not an ECR repository URI"),
        })?;
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(s) if s.meta().code() == Some("AccessDeniedException") => {
                    ImageRegistryError::Refused {
                        op: OP,
                        message: s.meta().message().unwrap_or("access denied").to_owned(),
                    }
                }
                _ => ImageRegistryError::Unavailable {
                    op: OP,
                    source: Box::new(e),
                },
            })?;
        let data = out
            .authorization_data()
            .first()
            .and_then(|d| Some((d.authorization_token()?, d.expires_at())))
            .ok_or_else(|| ImageRegistryError::Unavailable {
                op: OP,
                source: "the answer held no authorization token".into(),
            })?;
        Ok(PushCredentials {
            // The token is valid for every registry of the account and region; key it by the
            // repository's host, as docker and BuildKit look it up.
            registry: host.to_owned(),
            auth: SecretValue(data.0.to_owned()),
            expires_at: data
                .1
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        })
    }
}
