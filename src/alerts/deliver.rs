//! The two ways an alert leaves: a webhook `POST` (ureq, blocking) and SMTP email (lettre,
//! blocking). Both run on their channel's own thread, never on the DNS path.

use std::time::Duration;

use lettre::{
    message::{header::ContentType, Mailbox},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, CertificateStore, Tls, TlsParameters},
    },
    Message, SmtpTransport, Transport,
};

use super::{message, throttle::Outgoing, AlertError};
use crate::{
    config::alerts::{EmailConfig, WebhookConfig},
    schedule::TimeZone,
};

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Why one delivery attempt failed. `reason` never holds personal data (no device names,
/// domains or addresses of people), because it is logged.
#[derive(Debug)]
pub(super) struct Failure {
    /// Retrying cannot help (a 4xx answer, a refused recipient).
    pub permanent: bool,
    /// What went wrong, for the log.
    pub reason: String,
}

/// One way an alert leaves.
pub(super) trait Channel: Send {
    /// The `channel` label.
    fn name(&self) -> &'static str;
    /// One attempt to deliver `out`.
    fn deliver(&mut self, out: &Outgoing) -> Result<(), Failure>;
}

/// Reads a secret file, without its trailing newline.
fn secret(path: &std::path::Path) -> Result<String, AlertError> {
    let text = std::fs::read_to_string(path).map_err(|source| AlertError::Secret {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// JSON `POST` to the configured URL.
pub(super) struct Webhook {
    agent: ureq::Agent,
    url: String,
    secret: Option<(String, String)>,
    zone: TimeZone,
}

impl Webhook {
    pub(super) fn new(config: &WebhookConfig, zone: TimeZone) -> Result<Webhook, AlertError> {
        let secret = match &config.secret {
            Some((header, file)) => Some((header.clone(), secret(file)?)),
            None => None,
        };
        Ok(Webhook {
            agent: ureq::AgentBuilder::new().timeout(ATTEMPT_TIMEOUT).build(),
            url: config.url.clone(),
            secret,
            zone,
        })
    }
}

impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver(&mut self, out: &Outgoing) -> Result<(), Failure> {
        self.post(&message::webhook_json(out, self.zone))
    }
}

impl Webhook {
    /// One `POST` of `json` (a breach alert or a failed filtering check).
    pub(super) fn post(&self, json: &str) -> Result<(), Failure> {
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some((header, value)) = &self.secret {
            req = req.set(header, value);
        }
        match req.send_string(json) {
            Ok(_) => Ok(()),
            // Only the status: the URL itself may carry a token (chat webhooks do).
            Err(ureq::Error::Status(code, _)) => Err(Failure {
                permanent: (400..500).contains(&code) && code != 408 && code != 429,
                reason: format!("the receiver answered HTTP {code}"),
            }),
            Err(ureq::Error::Transport(t)) => Err(Failure {
                permanent: false,
                reason: format!("cannot reach the receiver ({})", t.kind()),
            }),
        }
    }
}

/// SMTP to the configured server.
pub(super) struct Email {
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
    zone: TimeZone,
    throttle_minutes: u64,
}

impl Email {
    pub(super) fn new(
        config: &EmailConfig,
        zone: TimeZone,
        throttle: Duration,
    ) -> Result<Email, AlertError> {
        Ok(Email {
            transport: transport(config)?,
            from: config.from.clone(),
            to: config.to.clone(),
            zone,
            throttle_minutes: throttle.as_secs() / 60,
        })
    }
}

/// The SMTP transport for `[alerts.email]`: STARTTLS required when configured (with the
/// configured CA), and the credentials from their file.
pub(super) fn transport(config: &EmailConfig) -> Result<SmtpTransport, AlertError> {
    let smtp = |e: lettre::transport::smtp::Error| AlertError::Smtp {
        reason: e.to_string(),
    };
    let mut builder = SmtpTransport::builder_dangerous(&config.server)
        .port(config.port)
        .timeout(Some(ATTEMPT_TIMEOUT));
    if config.starttls {
        let mut params = TlsParameters::builder(config.server.clone());
        if let Some(ca) = &config.tls_ca {
            let pem = std::fs::read(ca).map_err(|source| AlertError::Read {
                path: ca.clone(),
                source,
            })?;
            // The configured CA replaces the web roots, as `upstream.tls_ca` does.
            params = params
                .certificate_store(CertificateStore::None)
                .add_root_certificate(Certificate::from_pem(&pem).map_err(smtp)?);
        }
        // STARTTLS is required, not opportunistic: a downgrade must fail, not send the
        // alert in clear.
        builder = builder.tls(Tls::Required(params.build_rustls().map_err(smtp)?));
    }
    if let Some((user, file)) = &config.credentials {
        builder = builder.credentials(Credentials::new(user.clone(), secret(file)?));
    }
    Ok(builder.build())
}

/// Sends one HTML email (a report) to the configured recipients, once: the caller decides
/// whether to try again. The error never holds the message's content.
pub(super) fn send_html(
    config: &EmailConfig,
    subject: &str,
    html: String,
) -> Result<(), AlertError> {
    let mut builder = Message::builder()
        .from(config.from.clone())
        .subject(subject)
        .header(ContentType::TEXT_HTML);
    for to in &config.to {
        builder = builder.to(to.clone());
    }
    let msg = builder.body(html).map_err(|e| AlertError::Smtp {
        reason: format!("cannot build the message: {e}"),
    })?;
    transport(config)?
        .send(&msg)
        .map(|_| ())
        .map_err(|e| AlertError::Smtp {
            reason: e.to_string(),
        })
}

impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn deliver(&mut self, out: &Outgoing) -> Result<(), Failure> {
        self.send_text(
            message::email_subject(out),
            message::email_body(out, self.zone, self.throttle_minutes),
        )
    }
}

impl Email {
    /// One plain-text message to the recipients (a breach alert or a failed filtering check).
    pub(super) fn send_text(&self, subject: String, body: String) -> Result<(), Failure> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let msg = builder.body(body).map_err(|e| Failure {
            permanent: true,
            reason: format!("cannot build the message: {e}"),
        })?;
        self.transport.send(&msg).map(|_| ()).map_err(|e| Failure {
            permanent: e.is_permanent(),
            reason: e.to_string(),
        })
    }
}
