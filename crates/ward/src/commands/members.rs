//! `ward members …`: a clinic's staff from the operator's side. A clinic made by
//! `ward import` or `ward clinics create` has nobody on its staff; `ward members add`
//! gives it its owner (or anyone else): the workflow is `ward_app::staff::add_by_operator`,
//! with the same control-plane calls, audit row and invitation mail as the staff page.

use std::process::ExitCode;

use serde::Serialize;
use ward_app::staff::{self, AddRefused, OperatorAdd, OperatorAdded};
use ward_core::{ClinicStatus, Email, Role, format_time};
use ward_mail::{MailConfig, Mailer};

use crate::cli::{Global, MembersAddOpts, MembersCommand};
use crate::output::{json, note, say};

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
    let base_url = opts
        .public_url
        .as_deref()
        .map(str::trim)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"));
    let mailer = || {
        Mailer::new(
            platform.control.clone(),
            MailConfig {
                smtp_url: opts.mail.smtp_url.clone(),
                from: opts.mail.mail_from.clone(),
                outbox_dir: global.data_dir.join("outbox"),
            },
        )
    };
    let add = OperatorAdd {
        clinic: &clinic,
        email: &email,
        role,
        reason,
        base_url,
    };
    let clock = platform.control.clock().as_ref();
    let done = match staff::add_by_operator(
        &platform.control,
        &platform.tenants,
        clock,
        mailer,
        add,
    )
    .await
    {
        Ok(done) => done,
        Err(AddRefused::AlreadyMember(Some(was))) => anyhow::bail!(
            "{email} is already a member of clinic {} (as {})",
            clinic.slug,
            was.as_str()
        ),
        Err(AddRefused::AlreadyMember(None)) => {
            anyhow::bail!("{email} is already a member of clinic {}", clinic.slug)
        }
        Err(AddRefused::NoBaseUrl) => anyhow::bail!(
            "{email} has no account, so an invitation is mailed, and its link needs the address users reach Ward at: set WARD_PUBLIC_URL or --public-url (http:// or https://)"
        ),
        Err(AddRefused::NotQueued { error, unrecorded }) => {
            if let Some(e) = unrecorded {
                unrecorded_warning(*e);
            }
            let refused = AddRefused::NotQueued {
                error,
                unrecorded: None,
            };
            return Err(refused.into());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(e) = done.unrecorded {
        unrecorded_warning(e);
    }
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
    match done.added {
        OperatorAdded::Joined { user_id, disabled } => {
            if disabled {
                note(format_args!(
                    "warning: the account of {email} is disabled; `ward users enable` lets it sign in"
                ));
            }
            added.user_id = Some(user_id);
        }
        OperatorAdded::Invited {
            expires_at,
            delivered,
            mail,
        } => {
            if !delivered {
                note(format_args!(
                    "warning: the invitation mail is not delivered yet; it stays in the outbox and `ward serve` retries it ({mail})"
                ));
            }
            added.outcome = "invited";
            added.mail = Some(if delivered { "delivered" } else { "queued" });
            added.expires_at = Some(format_time(expires_at));
        }
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

/// The change is made by then: an audit row that could not be written is reported, not
/// undone (as for a clinic's status change).
fn unrecorded_warning(e: ward_app::Error) {
    note(format_args!(
        "warning: the change is done but the clinic's audit log could not record it: {:#}",
        anyhow::Error::from(e)
    ));
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
