//! Who may do what in a clinic: the one permission matrix, enforced on the server.
//!
//! | | owner | doctor | receptionist | billing |
//! |---|---|---|---|---|
//! | patient demographics: view / edit | ✓ / ✓ | ✓ / ✓ | ✓ / ✓ | ✓ / – |
//! | visits, diagnoses, prescriptions: view / write | ✓ / ✓ | ✓ / ✓ | – / – | – / – |
//! | appointments: view / manage | ✓ / ✓ | ✓ / ✓ | ✓ / ✓ | ✓ / – |
//! | payments, receipts, collection report | ✓ | view | record | ✓ |
//! | refund or void a payment | ✓ | – | – | ✓ |
//! | staff, settings, audit log, export, close clinic | ✓ | – | – | – |
//! | a patient's record, erasure, legal hold | ✓ | – | – | – |
//! | consent forms (attachments): view / upload | ✓ | ✓ | ✓ | – |

use crate::Role;

/// Something a person may be allowed to do in a clinic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See names, contact details, dates of birth.
    ViewDemographics,
    /// Register and edit patients' demographics.
    EditDemographics,
    /// See visits, examination notes, diagnoses and prescriptions.
    ViewClinical,
    /// Record visits, diagnoses and prescriptions (and print prescriptions).
    WriteClinical,
    /// See the appointment book.
    ViewAppointments,
    /// Book, reschedule and change the status of appointments.
    ManageAppointments,
    /// See payments and receipts.
    ViewPayments,
    /// Record payments and print receipts.
    RecordPayments,
    /// See the collection report (totals by method and staff member).
    ViewCollections,
    /// Refund or void a payment (and print those receipts). Stricter than recording
    /// one: money going back out is for the owner and billing staff.
    CorrectPayments,
    /// Invite, change and remove staff.
    ManageStaff,
    /// Change the clinic's settings.
    ManageSettings,
    /// Read the audit log and who accessed a record.
    ViewAudit,
    /// Request an export of the clinic's data.
    Export,
    /// Close the clinic.
    CloseClinic,
    /// Answer a patient's requests about their data: give them their whole record,
    /// erase it, or hold it from erasure (docs/patients.md).
    PatientRights,
    /// See and upload a patient's signed consent forms (attachments of kind consent);
    /// the other kinds of attachment are clinical (docs/attachments.md).
    ConsentForms,
}

impl Permission {
    /// Every permission, for matrix tests.
    pub const ALL: [Permission; 17] = [
        Self::ViewDemographics,
        Self::EditDemographics,
        Self::ViewClinical,
        Self::WriteClinical,
        Self::ViewAppointments,
        Self::ManageAppointments,
        Self::ViewPayments,
        Self::RecordPayments,
        Self::ViewCollections,
        Self::CorrectPayments,
        Self::ManageStaff,
        Self::ManageSettings,
        Self::ViewAudit,
        Self::Export,
        Self::CloseClinic,
        Self::PatientRights,
        Self::ConsentForms,
    ];
}

impl Role {
    /// Whether this role may do `p`. Exhaustive on both sides: a new role or permission
    /// does not compile until someone decides.
    pub fn can(self, p: Permission) -> bool {
        use Permission as P;
        // The owner may do everything; the others by row: (doctor, receptionist, billing).
        let (doctor, receptionist, billing) = match p {
            P::ViewDemographics | P::ViewAppointments | P::ViewPayments => (true, true, true),
            P::EditDemographics | P::ManageAppointments | P::ConsentForms => (true, true, false),
            P::ViewClinical | P::WriteClinical => (true, false, false),
            P::RecordPayments => (false, true, true),
            P::ViewCollections | P::CorrectPayments => (false, false, true),
            P::ManageStaff
            | P::ManageSettings
            | P::ViewAudit
            | P::Export
            | P::CloseClinic
            | P::PatientRights => (false, false, false),
        };
        match self {
            Role::Owner => true,
            Role::Doctor => doctor,
            Role::Receptionist => receptionist,
            Role::Billing => billing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission as P;

    /// The matrix of the product description, row by row: (permission, owner, doctor,
    /// receptionist, billing).
    const MATRIX: [(P, bool, bool, bool, bool); 17] = [
        (P::ViewDemographics, true, true, true, true),
        (P::EditDemographics, true, true, true, false),
        (P::ViewClinical, true, true, false, false),
        (P::WriteClinical, true, true, false, false),
        (P::ViewAppointments, true, true, true, true),
        (P::ManageAppointments, true, true, true, false),
        (P::ViewPayments, true, true, true, true),
        (P::RecordPayments, true, false, true, true),
        (P::ViewCollections, true, false, false, true),
        (P::CorrectPayments, true, false, false, true),
        (P::ManageStaff, true, false, false, false),
        (P::ManageSettings, true, false, false, false),
        (P::ViewAudit, true, false, false, false),
        (P::Export, true, false, false, false),
        (P::CloseClinic, true, false, false, false),
        (P::PatientRights, true, false, false, false),
        (P::ConsentForms, true, true, true, false),
    ];

    #[test]
    fn the_permission_matrix_is_exactly_the_documented_one() {
        assert_eq!(MATRIX.len(), Permission::ALL.len());
        for (p, owner, doctor, receptionist, billing) in MATRIX {
            assert_eq!(Role::Owner.can(p), owner, "owner {p:?}");
            assert_eq!(Role::Doctor.can(p), doctor, "doctor {p:?}");
            assert_eq!(
                Role::Receptionist.can(p),
                receptionist,
                "receptionist {p:?}"
            );
            assert_eq!(Role::Billing.can(p), billing, "billing {p:?}");
        }
    }
}
