//! The audit log's vocabulary: every action an entry can name. One enum, so the HTTP routes,
//! the CLI's local mode and the engine's own entries (rotation, purge) cannot drift apart in
//! spelling, and a query by action finds every entry of that kind.

use std::fmt;

macro_rules! actions {
    ($($variant:ident => $name:literal,)*) => {
        /// An audit entry's `action`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditAction { $($variant,)* }

        impl AuditAction {
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(AuditAction::$variant => $name,)* }
            }
        }
    };
}

actions! {
    Read => "read",
    Write => "write",
    Delete => "delete",
    List => "list",
    MetadataRead => "metadata_read",
    MetadataUpdate => "metadata_update",
    Versions => "versions",
    Restore => "restore",
    Rotate => "rotate",
    RotationFailed => "rotation_failed",
    RotationPolicy => "rotation_policy",
    Purge => "purge",
    PolicyRead => "policy_read",
    PolicyCreate => "policy_create",
    PolicyUpdate => "policy_update",
    PolicyDelete => "policy_delete",
    PolicyBind => "policy_bind",
    PolicyUnbind => "policy_unbind",
    AuditQuery => "audit_query",
    AuditPrune => "audit_prune",
    TokenIssue => "token_issue",
    TokenCreate => "token_create",
    TokenList => "token_list",
    TokenRevoke => "token_revoke",
    Whoami => "whoami",
    MountsRead => "mounts_read",
    Introspect => "introspect",
    AuthFailures => "auth_failures",
    IdentityRead => "identity_read",
    IdentityCreate => "identity_create",
    IdentityDelete => "identity_delete",
    IdentityMemberAdd => "identity_member_add",
    IdentityMemberRemove => "identity_member_remove",
    CredentialCreate => "credential_create",
    CredentialList => "credential_list",
    CredentialRevoke => "credential_revoke",
    RoleUpdate => "role_update",
    HealthRead => "health_read",
    Unseal => "unseal",
    Seal => "seal",
    KeyRotate => "key_rotate",
    Backup => "backup",
    RestoreFromBackup => "restore_from_backup",
    DestroyDamaged => "destroy_damaged",
    Verify => "verify",
    TestClockAdvance => "test_clock_advance",
    Generate => "generate",
    SecretPolicyRead => "secret_policy_read",
    SecretPolicyCreate => "secret_policy_create",
    SecretPolicyUpdate => "secret_policy_update",
    SecretPolicyDelete => "secret_policy_delete",
    WebhookRead => "webhook_read",
    WebhookCreate => "webhook_create",
    WebhookUpdate => "webhook_update",
    WebhookDelete => "webhook_delete",
    WebhookTest => "webhook_test",
    SubscriptionRead => "subscription_read",
    SubscriptionCreate => "subscription_create",
    SubscriptionUpdate => "subscription_update",
    SubscriptionDelete => "subscription_delete",
    // A poll or an acknowledgement (the reference's `subscription_event`).
    SubscriptionEvent => "subscription_event",
    PluginRead => "plugin_read",
    PluginInstall => "plugin_install",
    PluginVerify => "plugin_verify",
    PluginRemove => "plugin_remove",
    // A request no route serves (an unknown path or method).
    Request => "request",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<AuditAction> for String {
    fn from(a: AuditAction) -> String {
        a.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for a in AuditAction::ALL {
            let n = a.as_str();
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{n}"
            );
            assert!(seen.insert(n), "{n} twice");
        }
    }
}
