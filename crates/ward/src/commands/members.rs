//! `ward members …`: a clinic's staff from the operator's side. A clinic made by
//! `ward import` or `ward clinics create` has nobody on its staff; `ward members add`
//! gives it its owner (or anyone else), through the same control-plane calls, audit row
//! and invitation mail as the staff page.

use std::process::ExitCode;

use anyhow::Context as _;
use serde::Serialize;
use ward_clinic::audit::{Action, Actor, Entry};
use ward_control::{ClinicRecord, INVITE_TTL, Invited, Inviter, Platform, invitation_link};
use ward_core::{ClinicStatus, Email, Role, format_time};
use ward_mail::{MailConfig, Mailer, Message};

use crate::cli::{Global, MembersAddOpts, MembersCommand};
use crate::output::{json, note, say};

/// Who the clinic's history and audit log name for these changes.
const OPERATOR: &str = "operator";

/// Who an invitation from the command line says it is from.
const INVITER: &str = "The operator of Ward";

pub async fn run(global: &Global, cmd: MembersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MembersCommand::Add(opts) => add(global, opts).await,
        MembersCommand::List {
            clinic,
            json: as_json,
        } => list(global, &clinic, as_json).await,
    }
}

/// What `ward members add` did, for `--json`.
#[derive(Debug, Serialize)]
struct Added {
    clinic_id: String,
    clinic: String,
    email: String,
    role: Role,
    /// `joined` (the account is a member now) or `invited`.
    outcome: &'static str,
    /// The account that joined.
    user_id: Option<String>,
    /// An invitation's mail: `delivered`, or `queued` in the outbox for `ward serve`.
    mail: Option<&'static str>,
    /// When an invitation's link stops working.
    expires_at: Option<String>,
}

async fn add(global: &Global, opts: MembersAddOpts) -> anyhow::Result<ExitCode> {
    let reason = opts.reason.trim();
    anyhow::ensure!(!reason.is_empty(), "--reason must say why");
    let email =
        Email::parse(&opts.email).map_err(|e| anyhow::anyhow!("--email {:?}: {e}", opts.email))?;
    let platform = super::open_platform(global).await?;
    let clinic = super::find_clinic(&platform, &opts.clinic).await?;
    anyhow::ensure!(
        clinic.status == ClinicStatus::Active,
        "clinic {} is {}; only an active clinic takes new members",
        clinic.slug,
        clinic.status
    );
    let role = opts.role;
    let already = || anyhow::anyhow!("{email} is already a member of clinic {}", clinic.slug);
    let mut added = Added {
        clinic_id: clinic.id.to_string(),
        clinic: clinic.slug.to_string(),
        email: email.to_string(),
        role,
        outcome: "joined",
        user_id: None,
        mail: None,
        expires_at: None,
    };
    if let Some(user) = platform.control.user_by_email(&email).await? {
        if let Some(m) = platform.control.clinic_member(clinic.id, &user.id).await? {
            anyhow::bail!(
                "{email} is already a member of clinic {} (as {})",
                clinic.slug,
                m.role.as_str()
            );
        }
        let joined = platform
            .control
            .join_clinic(clinic.id, &user.id, role, OPERATOR)
            .await
            .context("the membership was not added")?;
        anyhow::ensure!(joined, already());
        record(
            &platform,
            &clinic,
            reason,
            &user.id,
            role,
            "added by the operator",
        )
        .await;
        if user.disabled {
            note(format_args!(
                "warning: the account of {email} is disabled; `ward users enable` lets it sign in"
            ));
        }
        added.user_id = Some(user.id);
    } else {
        // Everything that can be refused is checked before the invitation is issued.
        let base = opts
            .public_url
            .as_deref()
            .map(str::trim)
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .with_context(|| {
                format!(
                    "{email} has no account, so an invitation is mailed, and its link needs the address users reach Ward at: set WARD_PUBLIC_URL or --public-url (http:// or https://)"
                )
            })?;
        let mailer = Mailer::new(
            platform.control.clone(),
            MailConfig {
                smtp_url: opts.mail.smtp_url.clone(),
                from: opts.mail.mail_from.clone(),
                outbox_dir: global.data_dir.join("outbox"),
            },
        )
        .context("cannot set up outgoing mail")?;
        let inviter = Inviter {
            name: INVITER,
            user_id: None,
            actor: OPERATOR,
        };
        let Invited::Sent(token) = platform
            .control
            .invite_to_clinic(clinic.id, &email, role, inviter)
            .await
            .context("the invitation was not issued")?
        else {
            return Err(already());
        };
        let expires_at = platform.control.clock().now() + INVITE_TTL;
        record(
            &platform,
            &clinic,
            reason,
            email.as_str(),
            role,
            "invitation sent",
        )
        .await;
        let message = Message::StaffInvite {
            clinic_name: clinic.name.clone(),
            inviter: INVITER.to_owned(),
            role: role.as_str().to_owned(),
            link: invitation_link(base, &token),
        };
        let id = mailer
            .enqueue(&email, "", message)
            .await
            .context("the invitation was issued but its mail could not be stored")?;
        let delivered = mailer.deliver(id).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot deliver the invitation now");
            false
        });
        if !delivered {
            note(format_args!(
                "warning: the invitation mail is not delivered yet; it stays in the outbox and `ward serve` retries it ({})",
                mailer.describe()
            ));
        }
        added.outcome = "invited";
        added.mail = Some(if delivered { "delivered" } else { "queued" });
        added.expires_at = Some(format_time(expires_at));
    }
    if opts.json {
        json(&added)?;
    } else if added.outcome == "joined" {
        say(format_args!(
            "added {email} to clinic {} as {}",
            clinic.slug,
            role.as_str()
        ));
    } else {
        say(format_args!(
            "invited {email} to clinic {} as {}; the link works once, until {}",
            clinic.slug,
            role.as_str(),
            added.expires_at.as_deref().unwrap_or_default()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The clinic's audit row for someone coming onto its staff, by the operator. The change
/// is made by then: a row that cannot be written is reported, not undone (as for a
/// clinic's status change).
async fn record(
    platform: &Platform,
    clinic: &ClinicRecord,
    reason: &str,
    who: &str,
    role: Role,
    how: &str,
) {
    let entry = Entry::new(
        platform.control.clock().now(),
        Actor::Operator {
            name: OPERATOR.to_owned(),
        },
        Action::Create,
    )
    .reason(reason)
    .staff_added(who, role, how);
    if let Err(e) = super::clinics::record_in_audit_log(platform, clinic.id, entry).await {
        note(format_args!(
            "warning: the change is done but the clinic's audit log could not record it: {e:#}"
        ));
    }
}

/// The staff and open invitations, for `--json`.
#[derive(Debug, Serialize)]
struct Staff {
    members: Vec<ward_control::Member>,
    invitations: Vec<ward_control::PendingInvite>,
}

async fn list(global: &Global, clinic: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let platform = super::open_platform(global).await?;
    let clinic = super::find_clinic(&platform, clinic).await?;
    let staff = Staff {
        members: platform.control.clinic_members(clinic.id).await?,
        invitations: platform.control.pending_invites(clinic.id).await?,
    };
    if as_json {
        json(&staff)?;
        return Ok(ExitCode::SUCCESS);
    }
    if staff.members.is_empty() {
        say(format_args!(
            "clinic {} has no members; add its owner with `ward members add --clinic {} --email … --role owner --reason \"…\"`",
            clinic.slug, clinic.slug
        ));
    } else {
        say(format_args!(
            "{:<36}  {:<12}  {:<20}  {}",
            "USER", "ROLE", "SINCE", "EMAIL"
        ));
        for m in &staff.members {
            say(format_args!(
                "{:<36}  {:<12}  {:<20}  {}",
                m.user_id,
                m.role.as_str(),
                format_time(m.since),
                m.email
            ));
        }
    }
    for i in &staff.invitations {
        say(format_args!(
            "invited: {} as {}, until {}",
            i.email,
            i.role.as_str(),
            format_time(i.expires_at)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
