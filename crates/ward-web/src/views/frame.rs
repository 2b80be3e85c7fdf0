//! The frame around every clinic page: clinic name, the sections this role may open,
//! the signed-in user and the sign-out button.

use ward_core::Permission;

use crate::extract::ClinicAccess;
use crate::{AppError, Web};

/// One entry of the clinic navigation.
pub struct NavItem {
    /// Link target.
    pub href: String,
    /// Label.
    pub label: &'static str,
    /// Whether it is the current section.
    pub active: bool,
}

/// What `clinic_base.html` needs; every clinic page template has a `frame` field.
pub struct ClinicFrame {
    /// URL name of the clinic.
    pub slug: String,
    /// Display name of the clinic.
    pub clinic_name: String,
    /// Signed-in user's name.
    pub user_name: String,
    /// Their role, as text.
    pub role: String,
    /// CSRF token for the page's forms.
    pub csrf: String,
    /// Sections this role may open.
    pub nav: Vec<NavItem>,
    /// For an owner still without a second factor: the day their grace ends.
    pub second_factor_due: Option<String>,
    /// In a support session: its banner, and the reason the owners approved.
    pub support: Option<(String, String)>,
    /// For an owner: what support is asking for or doing now.
    pub support_notice: Option<String>,
}

/// The clinic sections, in menu order, with the permission each needs.
const SECTIONS: &[(&str, &str, Permission)] = &[
    ("", "Today", Permission::ViewAppointments),
    ("patients", "Patients", Permission::ViewDemographics),
    ("appointments", "Appointments", Permission::ViewAppointments),
    ("payments", "Payments", Permission::ViewPayments),
    ("staff", "Staff", Permission::ManageStaff),
    ("audit", "Audit log", Permission::ViewAudit),
    ("export", "Export", Permission::Export),
    ("settings", "Settings", Permission::ManageSettings),
    // Owners only (never a support session).
    ("support", "Support access", Permission::ManageStaff),
];

impl ClinicFrame {
    /// [`ClinicFrame::new`] with the clinic's name as the control plane has it now.
    pub async fn load(
        app: &Web,
        access: &ClinicAccess,
        csrf: String,
        section: &str,
    ) -> Result<Self, AppError> {
        let clinic = app.control.clinic_by_id(access.clinic_id).await?;
        Ok(Self::new(access, clinic.name, csrf, section))
    }

    /// The frame for `access`, with `section` (a first path segment under the clinic,
    /// `""` for the start page) marked current.
    pub fn new(access: &ClinicAccess, clinic_name: String, csrf: String, section: &str) -> Self {
        let nav = SECTIONS
            .iter()
            .filter(|(_, _, p)| access.can(*p))
            .map(|(path, label, _)| NavItem {
                href: format!("/c/{}/{path}", access.slug),
                label,
                active: *path == section,
            })
            .collect();
        Self {
            slug: access.slug.to_string(),
            clinic_name,
            user_name: access.session.user.name.clone(),
            role: match &access.support {
                Some(s) => ward_app::support::access_words(&s.grant).to_owned(),
                None => access.role.to_string(),
            },
            csrf,
            nav,
            second_factor_due: access
                .second_factor_due
                .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()),
            support: access
                .support
                .as_ref()
                .map(|s| (s.banner(), s.grant.reason.clone())),
            support_notice: access.support_notice.as_ref().and_then(|n| n.text()),
        }
    }
}
