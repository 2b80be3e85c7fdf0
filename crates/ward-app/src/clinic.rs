//! Changes to a clinic itself that live in the control plane and are recorded in the
//! clinic's audit log.

use ward_clinic::audit::{self, Diff, Entry};
use ward_control::lifecycle::Transition;
use ward_core::{Actor, ClinicId};
use ward_tenancy::Tenant;

use crate::error::TxError;
use crate::{App, Error};

/// Renames the clinic as the member `by`, inside the clinic's audit transaction: the
/// control plane's name and history change, and `entry` records the old and new name
/// (nothing is written when the name is the same).
pub async fn rename(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: &str,
    name: &str,
    entry: Entry,
) -> Result<(), Error> {
    let (control, actor, name) = (app.control.clone(), Actor::user(by), name.to_owned());
    let outcome = tenant
        .with_async(|conn| async move {
            audit::in_transaction_async(&conn, |tx| async move {
                let old = control.rename_clinic(clinic, &name, &actor).await?;
                if old != name {
                    let diff = Diff::new().field("name", old, name.clone());
                    audit::record(&tx, &entry.entity("settings", "clinic").diff(diff))?;
                }
                Ok::<_, TxError>(())
            })
            .await
        })
        .await;
    Ok(outcome?)
}

/// Saves the settings page as the member `by`: the clinic's `name` (in the control
/// plane, see [`rename`]) and its `settings` (see [`ward_clinic::settings::save`]), each
/// change audited as `entry`'s actor, address and time. A value the clinic refuses is
/// [`Error::Clinic`] with [`ClinicError::Invalid`].
pub async fn save_settings(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: &str,
    (name, settings): (&str, &ward_clinic::settings::ClinicSettings),
    entry: Entry,
) -> Result<(), Error> {
    let (actor, ip, at) = (entry.actor.clone(), entry.ip.clone(), entry.at);
    rename(app, tenant, clinic, by, name, entry).await?;
    tenant
        .with(|conn| ward_clinic::settings::save(&conn, settings, actor, ip.as_deref(), at))
        .await?;
    Ok(())
}

/// Closes the clinic as its owner `by`: `entry` goes to its audit log while it is still
/// open, then the control plane marks it closed (to be purged after the retention) and
/// its database is closed.
pub async fn close(
    app: &App,
    tenant: &Tenant,
    clinic: ClinicId,
    by: &str,
    entry: Entry,
) -> Result<(), Error> {
    let entry = entry
        .entity("clinic", clinic)
        .detail("clinic status active → closed");
    crate::record(tenant, entry).await?;
    let retention = ward_control::lifecycle::retention_days(app.config.retention_days);
    let actor = Actor::user(by);
    app.control
        .transition_clinic(
            clinic,
            Transition::Close,
            &actor,
            "closed by its owner",
            retention,
        )
        .await?;
    app.tenants.evict(clinic).await;
    Ok(())
}
