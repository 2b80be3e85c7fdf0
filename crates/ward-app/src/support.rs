//! Support access, the steps the pages and the `ward support` command share: each
//! step's row in the clinic's audit log, and the owners' mail. The workflow itself (who
//! may move a grant where) is `ward_control::support`.

use ward_clinic::audit::{self, Action, Actor, Entry};
use ward_control::ControlPlane;
use ward_control::support::{Grant, NewGrant};
use ward_core::Role;
use ward_mail::{Mailer, Message};
use ward_tenancy::TenantStore;

/// Whatever failed: the control plane, the clinic, its log or the mail.
pub type FlowError = Box<dyn std::error::Error + Send + Sync>;

/// How a support session appears in the clinic's audit log.
pub fn actor(grant: &Grant) -> Actor {
    Actor::Support {
        operator: grant.operator.clone(),
        reason: grant.reason.clone(),
        grant: grant.id,
        emergency: grant.emergency,
    }
}

/// "read only" or "changes allowed": what the grant lets the session do.
pub fn access_words(grant: &Grant) -> &'static str {
    if grant.write_allowed {
        "changes allowed"
    } else {
        "read only"
    }
}

/// Appends one step of `grant` (`what`: "requested …", "approved …") by `actor` to its
/// clinic's audit log, with the grant's reason, and anchors the new head.
pub async fn record_step(
    control: &ControlPlane,
    tenants: &TenantStore,
    grant: &Grant,
    actor: Actor,
    ip: Option<&str>,
    what: &str,
) -> Result<(), FlowError> {
    let mut entry = Entry::new(control.clock().now(), actor, Action::Support)
        .entity("support_grant", grant.id)
        .reason(&grant.reason)
        .detail(what);
    if let Some(ip) = ip {
        entry = entry.ip(ip);
    }
    let tenant = tenants.get(grant.clinic_id).await?;
    let recorded = tenant
        .with(|conn| audit::in_transaction(&conn, |tx| audit::record(&tx, &entry)))
        .await?;
    control
        .anchor(grant.clinic_id, recorded.seq, &recorded.hash)
        .await?;
    Ok(())
}

/// The operator's request: stored, recorded in the clinic's log, and mailed to every
/// owner (at once on the emergency path, which opens the window without approval).
/// Returns the grant and the outbox ids of the owners' mail.
pub async fn request(
    control: &ControlPlane,
    tenants: &TenantStore,
    mailer: &Mailer,
    base_url: &str,
    new: NewGrant<'_>,
) -> Result<(Grant, Vec<i64>), FlowError> {
    let grant = control.request_support(new).await?;
    let asked = if grant.write_requested {
        "changes asked for"
    } else {
        "read only"
    };
    let what = if grant.emergency {
        format!(
            "emergency support opened without approval: {} minutes, {}",
            grant.minutes,
            access_words(&grant)
        )
    } else {
        format!("support requested: {} minutes, {asked}", grant.minutes)
    };
    let operator = Actor::Operator {
        name: grant.operator.clone(),
    };
    record_step(control, tenants, &grant, operator, None, &what).await?;
    let mails = notify_owners(control, mailer, base_url, &grant).await?;
    Ok((grant, mails))
}

/// Mails every owner of the grant's clinic about it (a request, or an emergency
/// session); returns the outbox ids.
pub async fn notify_owners(
    control: &ControlPlane,
    mailer: &Mailer,
    base_url: &str,
    grant: &Grant,
) -> Result<Vec<i64>, FlowError> {
    let clinic = control.clinic_by_id(grant.clinic_id).await?;
    let link = format!(
        "{}/c/{}/support",
        base_url.trim_end_matches('/'),
        clinic.slug
    );
    let mut ids = Vec::new();
    for owner in control.clinic_members(grant.clinic_id).await? {
        if owner.role != Role::Owner {
            continue;
        }
        let Ok(email) = ward_core::Email::parse(&owner.email) else {
            continue;
        };
        let message = Message::SupportAccess {
            name: owner.name.clone(),
            clinic_name: clinic.name.clone(),
            operator: grant.operator.clone(),
            minutes: grant.minutes,
            emergency: grant.emergency,
            link: link.clone(),
        };
        ids.push(mailer.enqueue(&email, &owner.name, message).await?);
    }
    Ok(ids)
}

/// Marks the grants whose time is up (in `clinic`, or everywhere) as expired and writes
/// each one's row; a row that cannot be written is logged (the grant is over either way).
pub async fn expire(
    control: &ControlPlane,
    tenants: &TenantStore,
    clinic: Option<ward_core::ClinicId>,
) -> Result<Vec<Grant>, FlowError> {
    let expired = control.expire_support(clinic).await?;
    for grant in &expired {
        let what = if grant.starts_at.is_some() {
            "support session expired: its time was up"
        } else {
            "support request lapsed: no owner answered"
        };
        let system = Actor::System {
            name: "support".to_owned(),
        };
        if let Err(e) = record_step(control, tenants, grant, system, None, what).await {
            tracing::error!(error = %e, grant = grant.id, "could not record a support grant's expiry");
        }
    }
    Ok(expired)
}
