//! Git's smart HTTP protocol over our one HTTP stack (reqwest + rustls), registered as libgit2's
//! `http` and `https` transports (CONTRACTS §13.2, §15): git2 is built without its `https`
//! feature, so no OpenSSL, and a Lambda needs no `git` binary.
//!
//! The four services map onto the documented endpoints: `GET {url}/info/refs?service=git-…-pack`
//! for the advertisements and `POST {url}/git-…-pack` for the exchanges, the request body buffered
//! from libgit2's writes and sent on its first read. Credentials come from the URL's user info
//! (`https://x-access-token:TOKEN@host/…`) and go out as `Authorization: Basic`; the URL in errors
//! is always shown without them.
//!
//! This is the only module of the crate with `unsafe`: [`git2::transport::register`] is `unsafe`
//! because registrations must not race each other or the creation of transports, and git2 offers
//! no safe way to plug in a transport.

use std::io::{self, Read, Write};
use std::sync::Once;

use base64::Engine;
use git2::transport::{Service, SmartSubtransport, SmartSubtransportStream, Transport};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};

/// Where HTTP statuses show in git2's error messages, so callers can classify a refusal.
pub const REFUSED_MARKER: &str = "refused by the Git server";

static REGISTER: Once = Once::new();

/// Makes libgit2 use this transport for `http://` and `https://` remotes. Idempotent.
pub fn register() {
    REGISTER.call_once(|| {
        for scheme in ["http", "https"] {
            let factory =
                move |remote: &git2::Remote<'_>| Transport::smart(remote, true, HttpSubtransport);
            // SAFETY: `register` must be externally synchronised with other registrations and
            // with the creation of transports. `Once` runs this block exactly once, before any
            // caller of this module can create a remote through it (every entry point of the
            // Git adapter calls `register()` first, and `call_once` blocks concurrent callers
            // until registration is complete); nothing else in the process registers transports.
            #[allow(unsafe_code)]
            let registered = unsafe { git2::transport::register(scheme, factory) };
            if let Err(e) = registered {
                tracing::error!(scheme, error = %e, "registering the Git HTTP transport failed");
            }
        }
    });
}

struct HttpSubtransport;

impl SmartSubtransport for HttpSubtransport {
    fn action(
        &self,
        url: &str,
        action: Service,
    ) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            git2::Error::from_str("the Git HTTP transport runs inside spawn_blocking of a runtime")
        })?;
        let (remote, auth) = split_credentials(url)?;
        let base = remote.trim_end_matches('/');
        let (method, url, service) = match action {
            Service::UploadPackLs => (
                reqwest::Method::GET,
                format!("{base}/info/refs?service=git-upload-pack"),
                None,
            ),
            Service::ReceivePackLs => (
                reqwest::Method::GET,
                format!("{base}/info/refs?service=git-receive-pack"),
                None,
            ),
            Service::UploadPack => (
                reqwest::Method::POST,
                format!("{base}/git-upload-pack"),
                Some("upload-pack"),
            ),
            Service::ReceivePack => (
                reqwest::Method::POST,
                format!("{base}/git-receive-pack"),
                Some("receive-pack"),
            ),
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| git2::Error::from_str(&format!("HTTP client: {e}")))?;
        Ok(Box::new(HttpStream {
            handle,
            client,
            method,
            url,
            service,
            auth,
            body: Vec::new(),
            response: None,
            pending: Default::default(),
        }))
    }

    fn close(&self) -> Result<(), git2::Error> {
        Ok(())
    }
}

/// Splits `scheme://user:secret@host/path` into the URL without user info and the Basic
/// credentials header value.
fn split_credentials(url: &str) -> Result<(String, Option<HeaderValue>), git2::Error> {
    let mut parsed =
        reqwest::Url::parse(url).map_err(|e| git2::Error::from_str(&format!("not a URL ({e})")))?;
    let user = percent_decode(parsed.username());
    let password = parsed.password().map(percent_decode);
    let auth = match (user.is_empty(), password) {
        (true, None) => None,
        (_, password) => {
            let raw = format!("{user}:{}", password.unwrap_or_default());
            let mut v = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ))
            .map_err(|_| git2::Error::from_str("credentials are not valid in a header"))?;
            v.set_sensitive(true);
            Some(v)
        }
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), auth))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

struct HttpStream {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
    method: reqwest::Method,
    url: String,
    /// `upload-pack` / `receive-pack` for the POSTs.
    service: Option<&'static str>,
    auth: Option<HeaderValue>,
    body: Vec<u8>,
    response: Option<reqwest::Response>,
    pending: hyper::body::Bytes,
}

impl HttpStream {
    fn send(&mut self) -> io::Result<()> {
        let mut req = self.client.request(self.method.clone(), &self.url).header(
            USER_AGENT,
            concat!("git/2.0 (mlops/", env!("CARGO_PKG_VERSION"), ")"),
        );
        if let Some(service) = self.service {
            req = req
                .header(CONTENT_TYPE, format!("application/x-git-{service}-request"))
                .header(ACCEPT, format!("application/x-git-{service}-result"))
                .body(std::mem::take(&mut self.body));
        }
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let resp = self
            .handle
            .block_on(req.send())
            .map_err(|e| io::Error::other(format!("{} {}: {e}", self.method, self.url)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "HTTP {status} {REFUSED_MARKER}: {} {} (check the token and its write access)",
                    self.method, self.url
                ),
            ));
        }
        if !status.is_success() {
            return Err(io::Error::other(format!(
                "HTTP {status} from {} {}",
                self.method, self.url
            )));
        }
        self.response = Some(resp);
        Ok(())
    }
}

impl Read for HttpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.response.is_none() {
            self.send()?;
        }
        while self.pending.is_empty() {
            let Some(resp) = self.response.as_mut() else {
                return Ok(0);
            };
            match self.handle.block_on(resp.chunk()) {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(format!("reading {}: {e}", self.url))),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

impl Write for HttpStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.response.is_some() {
            return Err(io::Error::other("write after the request was sent"));
        }
        self.body.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_for_a_basic_header() {
        let (url, auth) =
            split_credentials("https://x-access-token:t%40k3n@git.example.com/org/repo.git")
                .expect("split");
        assert_eq!(url, "https://git.example.com/org/repo.git");
        let auth = auth.expect("auth");
        assert!(auth.is_sensitive());
        let encoded = base64::engine::general_purpose::STANDARD.encode("x-access-token:t@k3n");
        assert_eq!(auth.to_str().expect("ascii"), format!("Basic {encoded}"));
        let (url, auth) = split_credentials("http://127.0.0.1:9/r.git").expect("split");
        assert_eq!(url, "http://127.0.0.1:9/r.git");
        assert!(auth.is_none());
    }

    #[test]
    fn percent_decoding_is_total() {
        for s in ["%", "%4", "%zz", "a%41b", "%e2%82%ac", "%%41"] {
            let _ = percent_decode(s);
        }
        assert_eq!(percent_decode("a%41b"), "aAb");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
