//! When etcd cannot serve a request: which endpoints failed and how, each
//! asked in parallel within one short deadline.

use etcd_client::{Client, ConnectOptions};
use std::time::Duration;

/// One line per endpoint: `http://…: connection refused`, `…: no leader`, `…: ok`.
pub async fn diagnose(urls: &[String], deadline: Duration) -> String {
    let futs = urls.iter().map(|u| async move {
        let opts = ConnectOptions::new().with_connect_timeout(deadline).with_timeout(deadline);
        let r = tokio::time::timeout(deadline, async {
            let mut c = Client::connect([u.as_str()], Some(opts)).await?;
            c.status().await
        })
        .await;
        let what = match r {
            Err(_) => "no answer within the deadline".to_string(),
            Ok(Err(e)) => short(&e.to_string()),
            Ok(Ok(s)) if s.leader() == 0 => "up but without a leader (quorum lost)".to_string(),
            Ok(Ok(_)) => "ok".to_string(),
        };
        format!("{u}: {what}")
    });
    futures::future::join_all(futs).await.join("; ")
}

/// The gist of a tonic error (they nest deeply).
pub fn short(e: &str) -> String {
    if e.contains("Connection refused") || e.contains("connection refused") || e.contains("tcp connect error") {
        return "unreachable (TCP connect failed)".into();
    }
    if e.contains("no leader") {
        return "no leader (quorum lost)".into();
    }
    if e.contains("timed out") || e.contains("deadline") || e.contains("Timeout expired") {
        return "timed out".into();
    }
    let e = e.lines().next().unwrap_or(e);
    e.chars().take(160).collect()
}

/// The connection to the endpoint the client picked failed (a dead
/// member), or an election is under way: worth sending again within the deadline. Reads are idempotent;
/// a transaction that did commit before its answer was lost fails its
/// comparison when sent again, which the caller recognises (it reads back
/// its own write) or turns into a refusal, never into a double write.
pub fn retryable(e: &str) -> bool {
    e.contains("tcp connect error")
        || e.contains("Connection refused")
        || e.contains("connection refused")
        || e.contains("transport error")
        || e.contains("leader changed")
        || e.contains("no leader")
        // the HTTP/2 keep-alive gave a blackholed member's connection up
        || e.contains("http2 error")
}
