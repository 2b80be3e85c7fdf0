//! `ward support …`: the operator's side of support access (docs/support.md). The
//! request, each answer and the session's every page are written to the clinic's audit
//! log; the owners are mailed through the outbox.

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use ward_app::support as support_access;
use ward_clinic::audit::Actor;
use ward_control::support::{Grant, LinkRefused, NewGrant};
use ward_control::{ClinicRecord, Platform};
use ward_core::format_time;
use ward_mail::{MailConfig, Mailer};

use crate::cli::{Global, SupportCommand, SupportRequestOpts};
use crate::output::{json, note, say};

pub async fn run(global: &Global, cmd: SupportCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SupportCommand::Request(opts) => request(global, opts).await,
        SupportCommand::Status {
            clinic,
            json: as_json,
        } => status(global, &clinic, as_json).await,
        SupportCommand::Link { grant, public_url } => link(global, grant, public_url).await,
        SupportCommand::End { grant } => end(global, grant).await,
    }
}

/// Who at the operator's end: the login name running the command.
fn operator() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.trim().is_empty() => user.trim().to_owned(),
        _ => "operator".to_owned(),
    }
}

/// The address links point to, from --public-url or WARD_PUBLIC_URL.
fn base_url(public_url: Option<&str>) -> anyhow::Result<String> {
    public_url
        .map(str::trim)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|u| u.trim_end_matches('/').to_owned())
        .context("the owners' mail and the sign-in link need the address users reach Ward at: set WARD_PUBLIC_URL or --public-url (http:// or https://)")
}

/// A grant as `--json` prints it.
#[derive(Debug, Serialize)]
struct GrantOut<'a> {
    #[serde(flatten)]
    grant: &'a Grant,
    clinic: &'a str,
    /// The one-time sign-in link (emergency requests only: approval is not awaited).
    link: Option<&'a str>,
}

async fn request(global: &Global, opts: SupportRequestOpts) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !opts.reason.trim().is_empty(),
        "--reason must say why, in words the clinic's owners understand"
    );
    let base = base_url(opts.public_url.as_deref())?;
    let platform = super::open_platform(global).await?;
    let clinic = super::find_clinic(&platform, &opts.clinic).await?;
    anyhow::ensure!(
        clinic.status == ward_core::ClinicStatus::Active,
        "clinic {} is {}; support reaches only an active clinic",
        clinic.slug,
        clinic.status
    );
    let mailer = Mailer::new(
        platform.control.clone(),
        MailConfig {
            smtp_url: opts.mail.smtp_url.clone(),
            from: opts.mail.mail_from.clone(),
            outbox_dir: global.data_dir.join("outbox"),
        },
    )
    .context("cannot set up outgoing mail")?;
    let operator = operator();
    let new = NewGrant {
        clinic_id: clinic.id,
        operator: &operator,
        reason: &opts.reason,
        minutes: opts.minutes,
        write: opts.write,
        emergency: opts.emergency,
    };
    let (grant, mails) =
        support_access::request(&platform.control, &platform.tenants, &mailer, &base, new)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    deliver(&mailer, &mails).await;
    let link = if grant.emergency {
        Some(sign_in_link(&platform, &base, grant.id).await?)
    } else {
        None
    };
    if opts.json {
        json(&GrantOut {
            grant: &grant,
            clinic: clinic.slug.as_str(),
            link: link.as_deref(),
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    match &link {
        Some(link) => {
            say(format_args!(
                "emergency support grant #{} on clinic {} is open until {} ({}); its {} owner mail(s) are sent",
                grant.id,
                clinic.slug,
                grant.ends_at.map(format_time).unwrap_or_default(),
                support_access::access_words(&grant),
                mails.len()
            ));
            say(format_args!("sign in once with: {link}"));
        }
        None => say(format_args!(
            "support grant #{} requested on clinic {} for {} minutes; {} owner(s) were asked. When approved, `ward support link --grant {}` prints the sign-in link",
            grant.id,
            clinic.slug,
            grant.minutes,
            mails.len(),
            grant.id
        )),
    }
    Ok(ExitCode::SUCCESS)
}

/// Tries the owners' mail now; what cannot go stays in the outbox for `ward serve`.
async fn deliver(mailer: &Mailer, ids: &[i64]) {
    for id in ids {
        match mailer.deliver(*id).await {
            Ok(true) => {}
            Ok(false) | Err(_) => note(format_args!(
                "warning: a mail to the owners is not delivered yet; it stays in the outbox and `ward serve` retries it ({})",
                mailer.describe()
            )),
        }
    }
}

async fn sign_in_link(platform: &Platform, base: &str, grant: i64) -> anyhow::Result<String> {
    match platform.control.issue_support_link(grant).await? {
        Ok((token, _)) => Ok(format!("{base}/support/{token}")),
        Err(LinkRefused::Unknown) => anyhow::bail!("there is no support grant #{grant}"),
        Err(LinkRefused::NotApproved) => anyhow::bail!(
            "support grant #{grant} is not approved yet; an owner answers on the clinic's support page"
        ),
        Err(LinkRefused::AlreadyUsed) => anyhow::bail!(
            "the session of support grant #{grant} has started: its link was used, and no other is issued"
        ),
        Err(LinkRefused::Over) => anyhow::bail!(
            "support grant #{grant} is over (refused, ended or expired); request a new one"
        ),
    }
}

async fn link(global: &Global, grant: i64, public_url: Option<String>) -> anyhow::Result<ExitCode> {
    let base = base_url(public_url.as_deref())?;
    let platform = super::open_platform(global).await?;
    expire(&platform).await?;
    let link = sign_in_link(&platform, &base, grant).await?;
    say(format_args!(
        "sign in once, within {} minutes: {link}",
        ward_control::support::LINK_TTL.num_minutes()
    ));
    Ok(ExitCode::SUCCESS)
}

async fn expire(platform: &Platform) -> anyhow::Result<()> {
    support_access::expire(&platform.control, &platform.tenants, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// One line per grant for `status`.
fn describe(g: &Grant, now: chrono::DateTime<chrono::Utc>) -> String {
    let state = match g.state {
        ward_control::support::GrantState::Approved if g.open_at(now) => {
            "approved (link not used yet)".to_owned()
        }
        s => s.to_string(),
    };
    let mut line = format!(
        "#{:<5} {:<28} {:>2} min  {:<15}  {}{}  asked {}",
        g.id,
        state,
        g.minutes,
        support_access::access_words(g),
        g.operator,
        if g.emergency { " (emergency)" } else { "" },
        format_time(g.requested_at)
    );
    if let (Some(by), Some(end)) = (&g.decided_by, g.ends_at) {
        line.push_str(&format!("; approved by {by}, until {}", format_time(end)));
    } else if let Some(by) = &g.decided_by {
        line.push_str(&format!("; answered by {by}"));
    }
    if let Some(by) = &g.ended_by {
        line.push_str(&format!("; ended by {by}"));
    }
    if g.state == ward_control::support::GrantState::Approved && g.open_at(now) {
        line.push_str(&format!(
            "; get the sign-in link with `ward support link --grant {}`",
            g.id
        ));
    }
    line.push_str(&format!("; reason: {}", g.reason));
    line
}

async fn status(global: &Global, clinic: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let clinic: ClinicRecord = super::find_clinic(&platform, clinic).await?;
    expire(&platform).await?;
    let grants = platform.control.support_grants(clinic.id, 100).await?;
    if as_json {
        json(&grants)?;
        return Ok(ExitCode::SUCCESS);
    }
    if grants.is_empty() {
        say(format_args!(
            "clinic {} has no support grants; ask with `ward support request --clinic {} --reason \"…\" --minutes 30`",
            clinic.slug, clinic.slug
        ));
    }
    let now = platform.control.clock().now();
    for g in &grants {
        say(describe(g, now));
    }
    Ok(ExitCode::SUCCESS)
}

async fn end(global: &Global, grant: i64) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    expire(&platform).await?;
    let by = format!("Support ({})", operator());
    let Some(ended) = platform
        .control
        .end_support(grant, None, &by, "ended by the operator")
        .await?
    else {
        anyhow::bail!("support grant #{grant} is not open (unknown, already over, or refused)");
    };
    let actor = Actor::Operator {
        name: ended.operator.clone(),
    };
    if let Err(e) = support_access::record_step(
        &platform.control,
        &platform.tenants,
        &ended,
        actor,
        None,
        "support ended by the operator",
    )
    .await
    {
        note(format_args!(
            "warning: the grant is ended but the clinic's audit log could not record it: {e}"
        ));
    }
    say(format_args!(
        "support grant #{grant} ended; its session is signed out at its next page"
    ));
    Ok(ExitCode::SUCCESS)
}
