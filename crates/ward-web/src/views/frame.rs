//! The frame around every clinic page: clinic name, the sections this role may open,
//! the signed-in user and the sign-out button.

use ward_core::Permission;

use crate::extract::ClinicAccess;

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
];

impl ClinicFrame {
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
            role: access.role.to_string(),
            csrf,
            nav,
            second_factor_due: access
                .second_factor_due
                .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string()),
        }
    }
}
