use crate::PgError;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// Where and as whom to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the password
        write!(f, "{}@{}:{}/{}", self.user, self.host, self.port, self.dbname)
    }
}

impl Target {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

pub(crate) fn classify(what: &str, addr: &str, e: tokio_postgres::Error) -> PgError {
    if let Some(db) = e.as_db_error() {
        return PgError::Server {
            what: what.into(),
            addr: addr.into(),
            message: db.message().to_string(),
            code: Some(db.code().code().to_string()),
        };
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return PgError::Refused { addr: addr.into() };
            }
        }
        src = s.source();
    }
    PgError::Network { what: what.into(), addr: addr.into(), message: e.to_string() }
}

/// Connect with a deadline covering TCP connect, TLS-less startup and
/// authentication. The connection task is spawned on the runtime.
pub async fn connect(t: &Target, deadline: Duration) -> Result<Client, PgError> {
    let mut c = Config::new();
    c.host(&t.host)
        .port(t.port)
        .user(&t.user)
        .password(&t.password)
        .dbname(&t.dbname)
        .application_name("pgscale")
        .connect_timeout(deadline)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5));
    let addr = t.addr();
    match tokio::time::timeout(deadline, c.connect(NoTls)).await {
        Err(_) => Err(PgError::Timeout { what: "connect".into(), addr, deadline }),
        Ok(Err(e)) => Err(classify("connect", &addr, e)),
        Ok(Ok((client, conn))) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        }
    }
}

/// Whether something accepts TCP connections on host:port (within the deadline).
pub async fn tcp_listening(host: &str, port: u16, deadline: Duration) -> bool {
    matches!(tokio::time::timeout(deadline, tokio::net::TcpStream::connect((host, port))).await, Ok(Ok(_)))
}

/// A SCRAM-SHA-256 verifier for a password: what `CREATE ROLE … PASSWORD`
/// receives, so the clear text never reaches the server's logs.
pub fn scram_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}
