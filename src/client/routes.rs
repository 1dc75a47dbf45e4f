//! Which of a datanode's two addresses this client uses. A datanode may have a public
//! address besides its cluster one (`datanode.public_advertise`: a container's port
//! published on the host, while other containers use its name on the Docker network).
//! The client takes the public address when it can open a TCP connection there, else the
//! cluster address, and remembers the answer: for good once the public address answered,
//! for a short while when it did not (a node restarting should not pin us to an address
//! we cannot reach).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::endpoint_uri;
use crate::sync::Locked;

/// How long a public address that did not answer is left untried.
const RETRY_PUBLIC_AFTER: Duration = Duration::from_secs(10);
/// The longest a probe of a public address may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone, Default)]
pub(crate) struct Routes {
    /// Public address -> whether it answered, and when we found out.
    seen: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
}

impl Routes {
    /// The address to dial: `public` when set and reachable from here, else `addr`.
    pub async fn pick(&self, addr: &str, public: &str, connect_timeout: Duration) -> String {
        if public.is_empty() {
            return addr.to_string();
        }
        let known = self.seen.locked().get(public).copied();
        let reachable = match known {
            Some((true, _)) => true,
            Some((false, at)) if at.elapsed() < RETRY_PUBLIC_AFTER => false,
            _ => {
                let ok = probe(public, connect_timeout.min(PROBE_TIMEOUT)).await;
                self.seen
                    .locked()
                    .insert(public.to_string(), (ok, Instant::now()));
                if !ok {
                    tracing::debug!(
                        public,
                        addr,
                        "public address unreachable; using the cluster address"
                    );
                }
                ok
            }
        };
        if reachable { public } else { addr }.to_string()
    }
}

/// Whether a TCP connection to `addr` ("host:port" or a URI) opens within `limit`.
async fn probe(addr: &str, limit: Duration) -> bool {
    let Ok(uri) = endpoint_uri(addr).parse::<http::Uri>() else {
        return false;
    };
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return false;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    matches!(
        tokio::time::timeout(limit, tokio::net::TcpStream::connect((host.as_str(), port))).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_the_public_address_only_when_it_answers() {
        let routes = Routes::default();
        let t = Duration::from_secs(1);
        assert_eq!(
            routes.pick("http://dn1:7071", "", t).await,
            "http://dn1:7071"
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = format!("http://{}", listener.local_addr().unwrap());
        assert_eq!(routes.pick("http://dn1:7071", &open, t).await, open);

        // A port nothing listens on: bind one, note it, close it.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        assert_eq!(
            routes.pick("http://dn2:7071", &closed, t).await,
            "http://dn2:7071"
        );
        // Remembered either way: the answer for the open one holds after it closes.
        drop(listener);
        assert_eq!(routes.pick("http://dn1:7071", &open, t).await, open);
        assert_eq!(routes.seen.locked().len(), 2);
    }
}
