//! `ward users …`: the operator's hand on accounts.

use std::process::ExitCode;

use anyhow::Context as _;
use ward_control::AuthEvent;
use ward_core::Email;

use crate::cli::{Global, UsersCommand};
use crate::output::say;

pub async fn run(global: &Global, cmd: UsersCommand) -> anyhow::Result<ExitCode> {
    let (email, reason, disable) = match cmd {
        UsersCommand::Disable { email, reason } => (email, reason, true),
        UsersCommand::Enable { email, reason } => (email, reason, false),
    };
    anyhow::ensure!(!reason.trim().is_empty(), "--reason must say why");
    let email = Email::parse(&email).map_err(|e| anyhow::anyhow!("--email: {e}"))?;
    let platform = super::open_platform(global).await?;
    let found = platform
        .control
        .set_user_disabled(&email, disable)
        .await
        .context("the account was not changed")?;
    anyhow::ensure!(found, "there is no account for {email}");
    let kind = if disable {
        "account_disable"
    } else {
        "account_enable"
    };
    platform
        .control
        .record_auth_event(AuthEvent {
            kind: kind.into(),
            email: Some(email.to_string()),
            outcome: "ok".into(),
            detail: Some(format!("operator: {}", reason.trim())),
            ..AuthEvent::default()
        })
        .await?;
    say(if disable {
        format!("disabled {email}; its sessions have ended")
    } else {
        format!("re-enabled {email}")
    });
    Ok(ExitCode::SUCCESS)
}
