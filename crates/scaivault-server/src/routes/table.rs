//! The route table: every endpoint declared once, with what it needs and what it records.
//!
//! The router is built from it, the OpenAPI document is rendered from it, the per-route guard
//! reads each route's access rule, rate-limit bucket and audit action from it, and the
//! authorization matrix test (`tests/authz_matrix.rs`) walks it. A route is added here or
//! nowhere.
//!
//! The guard checks a route's scope **before** its handler runs, so no handler reads a body,
//! parses JSON or touches the engine for a token that may not call it (an upload to
//! `/v1/sys/restore` by a `secrets:read` token is refused before its first byte is read).
//! The engine checks again (scope and path policy): the table is the outer wall, not the
//! only one.

use std::sync::Arc;

use axum::routing::{MethodFilter, MethodRouter, on};
use scaivault_core::scope::Scope;
use scaivault_engine::AuditAction;

use super::{audit, auth, identities, plugins, policies, rotation, secret_policies, secrets};
use super::{subscriptions, sys, vault, webhooks};
use crate::ratelimit::Category;
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: health, version, seal status, unseal, the client-credentials grant.
    Public,
    /// `/v1/metrics`: public unless the server was started with private metrics (then admin).
    Metrics,
    /// Any valid token (`whoami`).
    Token,
    /// A token holding this scope (`admin` holds every scope).
    Scope(Scope),
    /// A token holding both scopes (Vault's KV patch reads the secret it writes).
    Both(Scope, Scope),
    /// The scope depends on the rest of the path (`POST /v1/secrets/batch` reads values,
    /// `…/batch/metadata` reads metadata); a tail not listed answers 405.
    Tail(&'static [(&'static str, Scope, AuditAction)]),
}

/// What the audit log records of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audited {
    /// Not audited: health, version, metrics, status, the policy dry-run.
    No,
    /// One entry with this action, naming no secret.
    Action(AuditAction),
    /// One entry with this action, naming the secret the path's `{*path}` tail names.
    Secret(AuditAction),
    /// The handler commits the entry with the change it records (a secret write); the guard
    /// records it only when the handler failed before it could.
    ByHandler(AuditAction),
}

/// One endpoint.
pub struct RouteSpec {
    pub method: &'static str,
    /// In axum's syntax: `{id}` one segment, `{*path}` the rest.
    pub path: &'static str,
    pub access: Access,
    pub(crate) category: Category,
    pub audit: Audited,
    pub summary: &'static str,
    /// Only on a dev server started with `--test-clock`.
    pub test_only: bool,
    /// A larger body than the server's limit (a plugin's WebAssembly, base64-encoded).
    pub large_body: bool,
    pub(crate) handler: fn(MethodFilter) -> MethodRouter<Arc<AppState>>,
    /// The JSON body the route takes, as a schema for the OpenAPI document; `None` for a
    /// route that takes no body or (with `binary_body`) a stream of bytes.
    pub request: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    /// The JSON a success answers with, where the handler returns a typed result.
    pub response: Option<fn(&mut schemars::SchemaGenerator) -> schemars::Schema>,
    /// The body is a file's bytes (`application/octet-stream`): a backup to restore from.
    pub binary_body: bool,
}

impl RouteSpec {
    /// The part of the path before a `{*path}` tail, for routes that have one.
    pub fn tail_prefix(&self) -> Option<&'static str> {
        self.path.find("{*").map(|i| &self.path[..i])
    }

    pub fn filter(&self) -> MethodFilter {
        match self.method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "PATCH" => MethodFilter::PATCH,
            "DELETE" => MethodFilter::DELETE,
            m => unreachable!("no route uses {m}"),
        }
    }
}

macro_rules! routes {
    ($($method:ident $path:literal => $handler:path $([$($body:ty)? $(=> $resp:ty)?])?, $access:expr, $cat:ident, $audit:expr, $summary:literal $(, $opt:ident)*;)*) => {
        /// Every route the server answers.
        pub static ROUTES: &[RouteSpec] = &[$(
            RouteSpec {
                method: stringify!($method),
                path: $path,
                access: $access,
                category: Category::$cat,
                audit: $audit,
                summary: $summary,
                test_only: routes!(@has test_only $($opt)*),
                large_body: routes!(@has large_body $($opt)*),
                binary_body: routes!(@has binary_body $($opt)*),
                handler: |f| on(f, $handler),
                request: routes!(@body $($($body)?)?),
                response: routes!(@body $($($resp)?)?),
            },
        )*];
    };
    (@body) => { None };
    (@body $t:ty) => { Some(|g: &mut schemars::SchemaGenerator| g.subschema_for::<$t>()) };
    (@has $want:ident) => { false };
    (@has test_only test_only $($rest:ident)*) => { true };
    (@has large_body large_body $($rest:ident)*) => { true };
    (@has binary_body binary_body $($rest:ident)*) => { true };
    (@has $want:ident $other:ident $($rest:ident)*) => { routes!(@has $want $($rest)*) };
}

use Access::{Metrics, Public, Tail, Token};
use AuditAction as A;
use Audited::{Action, ByHandler, No, Secret};
use Scope::*;

const fn s(scope: Scope) -> Access {
    Access::Scope(scope)
}

routes! {
    GET "/v1/health" => sys::health, Public, Public, No, "Liveness";
    GET "/v1/health/ready" => sys::ready, Public, Public, No, "Readiness (503 while sealed)";
    GET "/v1/health/detailed" => sys::health_detailed, s(Admin), Admin, Action(A::HealthRead),
        "Status, version, uptime, and the database (latency) and encryption (data keys) checks";
    GET "/v1/version" => sys::version, Public, Public, No, "Version and file-format version";
    GET "/v1/metrics" => sys::metrics, Metrics, Public, No, "Prometheus metrics";
    GET "/v1/openapi.json" => sys::openapi, Public, Public, No, "This document";
    GET "/v1/sys/status" => sys::status, Public, Public, No, "Seal state";
    POST "/v1/sys/unseal" => sys::unseal [sys::UnsealRequest], Public, Public, Action(A::Unseal),
        "Unseal with a passphrase, key file or recovery key (one key derivation at a time)";
    POST "/v1/sys/seal" => sys::seal, s(Admin), Admin, ByHandler(A::Seal),
        "Seal (its audit entry is made durable before the vault closes)";
    POST "/v1/sys/rotate-key" => sys::rotate_key, s(Admin), Admin, Action(A::KeyRotate),
        "Add a data key; new writes use it";
    GET "/v1/sys/backup" => sys::backup, s(Admin), Admin, Action(A::Backup),
        "Stream a consistent, encrypted backup";
    POST "/v1/sys/restore" => sys::restore [=> scaivault_engine::WriteOutcome], s(Admin), Admin, ByHandler(A::RestoreFromBackup),
        "Write one secret back from an uploaded backup (audited with its path and versions)", binary_body;
    DELETE "/v1/sys/damaged/{*path}" => sys::destroy_damaged [=> scaivault_engine::DamagedDestroyed], s(Admin), Admin, Secret(A::DestroyDamaged),
        "Destroy what is left of a damaged secret (one that answers integrity_error), so its path can be written again";
    POST "/v1/sys/verify" => sys::verify [=> scaivault_engine::VaultReport], s(Admin), Admin, Action(A::Verify),
        "Check every record, the indexes and the audit chain";
    POST "/v1/sys/test/clock" => sys::advance_test_clock [sys::AdvanceClock], s(Admin), Admin, Action(A::TestClockAdvance),
        "Move the test clock forward and run the rotation scheduler (dev --test-clock only)", test_only;

    GET "/v1/secrets" => secrets::list [=> scaivault_engine::ListPage], s(SecretsList), List, Action(A::List),
        "List secrets by prefix (cursor pagination)";
    GET "/v1/secrets/{*path}" => secrets::read [=> scaivault_engine::SecretView], s(SecretsRead), Read, Secret(A::Read),
        "Read a secret (current or ?version=N)";
    PUT "/v1/secrets/{*path}" => secrets::write [scaivault_engine::WriteRequest => scaivault_engine::WriteOutcome], s(SecretsWrite), Write, ByHandler(A::Write),
        "Write a new version";
    DELETE "/v1/secrets/{*path}" => secrets::delete [=> scaivault_engine::Deletion], s(SecretsDelete), Delete, Secret(A::Delete),
        "Soft delete, or ?permanent=true";
    POST "/v1/secrets/{*path}" => secrets::post [secrets::SecretsPost => secrets::SecretsPostAnswer],
        Tail(&[
            ("batch", SecretsRead, A::Read),
            ("batch/metadata", SecretsList, A::MetadataRead),
            ("batch/write", SecretsWrite, A::Write),
        ]),
        Batch, No,
        "Batch read when {path} is `batch`; metadata of many paths when it is `batch/metadata`; an atomic write of many secrets (one transaction, all or none) when it is `batch/write`";
    GET "/v1/metadata/{*path}" => secrets::metadata [=> scaivault_engine::SecretSummary], s(SecretsList), List, Secret(A::MetadataRead),
        "Metadata without the value";
    PATCH "/v1/metadata/{*path}" => secrets::update_metadata [secrets::MetadataPatch => scaivault_engine::SecretSummary], s(SecretsWrite), Write,
        Secret(A::MetadataUpdate), "Merge metadata; no new version";
    GET "/v1/versions/{*path}" => secrets::versions [=> scaivault_engine::VersionHistory], s(SecretsList), List, Secret(A::Versions),
        "Version history";
    POST "/v1/restore/{*path}" => secrets::restore [=> scaivault_engine::SecretSummary], s(SecretsDelete), Delete, Secret(A::Restore),
        "Undo a soft delete";
    POST "/v1/rotate/{*path}" => secrets::rotate [=> scaivault_engine::RotateResult], s(SecretsRotate), Write, Secret(A::Rotate),
        "Rotate one secret now, as its rotation policy says (secrets:rotate and `rotate` on the path)";
    GET "/v1/expiring" => secrets::expiring [=> scaivault_engine::ExpiringSecrets], s(SecretsList), List, Action(A::List),
        "Secrets expiring within ?days=N (default 30) under ?prefix=, soonest first (at most ?limit=)";

    GET "/v1/policies" => policies::list [=> scaivault_engine::PolicyList], s(PoliciesRead), Policy, Action(A::PolicyRead),
        "List access policies";
    POST "/v1/policies" => policies::create [scaivault_engine::PolicyRequest], s(Admin), Policy, Action(A::PolicyCreate),
        "Create an access policy (admin: policies decide who may do what)";
    POST "/v1/policies/test" => policies::test [scaivault_engine::PolicyTestRequest], s(PoliciesRead), PolicyTest, No,
        "Dry-run an access decision (not audited)";
    GET "/v1/policies/{id}" => policies::get, s(PoliciesRead), Policy, Action(A::PolicyRead),
        "Get a policy";
    PUT "/v1/policies/{id}" => policies::replace [scaivault_engine::PolicyRequest], s(Admin), Policy, Action(A::PolicyUpdate),
        "Replace a policy (bindings kept; admin)";
    PATCH "/v1/policies/{id}" => policies::patch [scaivault_engine::PolicyRequest], s(Admin), Policy, Action(A::PolicyUpdate),
        "Update part of a policy (admin)";
    DELETE "/v1/policies/{id}" => policies::delete, s(Admin), Policy, Action(A::PolicyDelete),
        "Delete a policy (?force=true with bindings; admin)";
    GET "/v1/policies/{id}/bindings" => policies::bindings, s(PoliciesRead), Policy,
        Action(A::PolicyRead), "List bindings";
    POST "/v1/policies/{id}/bindings" => policies::bind [scaivault_engine::BindingRequest], s(Admin), Policy, Action(A::PolicyBind),
        "Bind an identity (admin)";
    DELETE "/v1/policies/{id}/bindings/{binding}" => policies::unbind, s(Admin), Policy,
        Action(A::PolicyUnbind), "Remove a binding (admin)";

    GET "/v1/audit/logs" => audit::logs [=> scaivault_engine::AuditPage], s(AuditRead), Audit, Action(A::AuditQuery),
        "Query the audit log";
    GET "/v1/audit/secrets/{*path}" => audit::for_secret [=> scaivault_engine::AuditTrail], s(AuditRead), Audit, Action(A::AuditQuery),
        "Audit entries of one secret, with its 30-day summary";
    GET "/v1/audit/identities/{id}" => audit::for_identity [=> scaivault_engine::AuditTrail], s(AuditRead), Audit,
        Action(A::AuditQuery), "Audit entries of one identity, with its 30-day summary";
    GET "/v1/audit/summary" => audit::summary [=> scaivault_engine::AuditSummary], s(AuditRead), Audit, Action(A::AuditQuery),
        "Counts by action, identity, path and hour (from, to, identity_id, secret_path)";
    GET "/v1/audit/verify" => audit::verify [=> scaivault_engine::VerifyReport], s(AuditRead), Audit, Action(A::AuditQuery),
        "Verify the hash chain";
    POST "/v1/audit/prune" => audit::prune [audit::PruneRequest => scaivault_engine::AuditPruned], s(Admin), Audit, Action(A::AuditPrune),
        "Prune entries older than a duration";

    GET "/v1/rotation/policies" => rotation::list [=> scaivault_engine::RotationPolicyList], s(Admin), Admin, Action(A::RotationPolicy),
        "List rotation policies (`data`)";
    POST "/v1/rotation/policies" => rotation::create [scaivault_engine::RotationPolicyRequest => scaivault_engine::RotationPolicyView], s(Admin), Admin, Action(A::RotationPolicy),
        "Create a rotation policy (`rot_<name>`)";
    GET "/v1/rotation/policies/{id}" => rotation::get [=> scaivault_engine::RotationPolicyView], s(Admin), Admin, Action(A::RotationPolicy),
        "Get a rotation policy and its secrets";
    PATCH "/v1/rotation/policies/{id}" => rotation::patch [scaivault_engine::RotationPolicyRequest => scaivault_engine::RotationPolicyView], s(Admin), Admin,
        Action(A::RotationPolicy), "Update a rotation policy";
    DELETE "/v1/rotation/policies/{id}" => rotation::delete, s(Admin), Admin,
        Action(A::RotationPolicy), "Delete a rotation policy (detaches its secrets)";
    POST "/v1/rotation/policies/{id}/enable" => rotation::enable [=> scaivault_engine::RotationPolicyView], s(Admin), Admin,
        Action(A::RotationPolicy), "Resume a paused policy";
    POST "/v1/rotation/policies/{id}/disable" => rotation::disable [=> scaivault_engine::RotationPolicyView], s(Admin), Admin,
        Action(A::RotationPolicy), "Pause a policy";
    POST "/v1/rotation/policies/{id}/secrets" => rotation::assign [rotation::AssignRequest => scaivault_engine::RotationAssignment], s(Admin), Admin,
        Action(A::RotationPolicy), "Attach a secret";
    DELETE "/v1/rotation/policies/{id}/secrets/{*path}" => rotation::unassign, s(Admin), Admin,
        Action(A::RotationPolicy), "Detach a secret";
    POST "/v1/rotation/policies/{id}/rotate" => rotation::rotate [rotation::RotateRequest => scaivault_engine::RotateResult], s(Admin), Admin,
        Action(A::Rotate), "Rotate now (all, or `secret_path`)";
    GET "/v1/rotation/status" => rotation::status [=> scaivault_engine::RotationStatus], s(Admin), Admin, Action(A::RotationPolicy),
        "Per-secret rotation state";

    GET "/v1/auth/whoami" => auth::whoami [=> scaivault_engine::Whoami], Token, Auth, Action(A::Whoami), "The caller";
    POST "/v1/auth/introspect" => auth::introspect [auth::IntrospectRequest => scaivault_engine::Introspection], s(Admin), Auth, Action(A::Introspect),
        "Inspect another token";
    POST "/v1/auth/token" => auth::client_credentials [auth::ClientCredentialsRequest => scaivault_engine::TokenGrant], Public, Public, Action(A::TokenIssue),
        "Client-credentials grant (rate-limited per address and per client)";
    GET "/v1/auth/tokens" => auth::list_tokens [=> scaivault_engine::TokenList], s(Admin), Admin, Action(A::TokenList),
        "List tokens (never their values)";
    POST "/v1/auth/tokens" => auth::create_token [scaivault_engine::CreateToken], s(Admin), Admin, Action(A::TokenCreate),
        "Create a token (shown once)";
    DELETE "/v1/auth/tokens/{id}" => auth::revoke_token [=> scaivault_engine::TokenRevoked], s(Admin), Admin, Action(A::TokenRevoke),
        "Revoke a token";

    GET "/v1/identity/roles" => identities::roles [=> scaivault_engine::RoleList], Token, Admin, No,
        "The admin roles there are";
    GET "/v1/identity/users/{id}/roles" => identities::user_roles [=> scaivault_engine::UserRoles], s(IdentityRead), Admin, Action(A::IdentityRead),
        "A user's admin roles";
    PUT "/v1/identity/users/{id}/roles" => identities::set_user_roles [identities::RolesRequest => scaivault_engine::UserRoles], s(IdentityAdmin), Admin, Action(A::RoleUpdate),
        "Replace a user's admin roles (only a super_admin or partner_admin; super_admin only by a super_admin; never one's own raised)";
    GET "/v1/identity/resolve/{identity_type}/{id}" => identities::resolve [=> scaivault_engine::ResolvedIdentity], s(IdentityRead), Admin, Action(A::IdentityRead),
        "An identity with its groups and roles";
    GET "/v1/identities" => identities::list, s(IdentityRead), Admin, Action(A::IdentityRead),
        "List identities";
    POST "/v1/identities" => identities::create [scaivault_engine::CreateIdentity], s(Admin), Admin, Action(A::IdentityCreate),
        "Create a user, service account or group";
    GET "/v1/identities/{id}" => identities::get, s(IdentityRead), Admin, Action(A::IdentityRead),
        "Get an identity";
    DELETE "/v1/identities/{id}" => identities::delete, s(Admin), Admin,
        Action(A::IdentityDelete), "Delete an identity and revoke its tokens";
    POST "/v1/identities/{id}/members" => identities::add_member [identities::MemberRequest], s(Admin), Admin,
        Action(A::IdentityMemberAdd), "Add a group member";
    DELETE "/v1/identities/{id}/members/{member}" => identities::remove_member, s(Admin), Admin,
        Action(A::IdentityMemberRemove), "Remove a group member";
    GET "/v1/identities/{id}/credentials" => identities::list_credentials [=> scaivault_engine::CredentialList], s(Admin), Admin,
        Action(A::CredentialList), "List an identity's client credentials (never their secrets)";
    POST "/v1/identities/{id}/credentials" => identities::create_credential [identities::CredentialRequest => scaivault_engine::IssuedCredential], s(Admin), Admin,
        Action(A::CredentialCreate), "Issue a client credential";
    DELETE "/v1/identities/{id}/credentials/{credential}" => identities::revoke_credential [=> scaivault_engine::CredentialRevoked],
        s(Admin), Admin, Action(A::CredentialRevoke),
        "Revoke a client credential and the tokens it minted";

    GET "/v1/secret-policies" => secret_policies::list [=> scaivault_engine::SecretPolicyList], s(Admin), Admin,
        Action(A::SecretPolicyRead), "List secret (generation) policies";
    POST "/v1/secret-policies" => secret_policies::create [scaivault_engine::SecretPolicyRequest => scaivault_engine::SecretPolicy], s(Admin), Admin,
        Action(A::SecretPolicyCreate), "Create a recipe of {name, generator, config} fields";
    GET "/v1/secret-policies/{id}" => secret_policies::get [=> scaivault_engine::SecretPolicy], s(Admin), Admin,
        Action(A::SecretPolicyRead), "Get a secret policy";
    PATCH "/v1/secret-policies/{id}" => secret_policies::patch [scaivault_engine::SecretPolicyRequest => scaivault_engine::SecretPolicy], s(Admin), Admin,
        Action(A::SecretPolicyUpdate), "Update a secret policy";
    DELETE "/v1/secret-policies/{id}" => secret_policies::delete, s(Admin), Admin,
        Action(A::SecretPolicyDelete), "Delete a secret policy no rotation policy uses";
    POST "/v1/secret-policies/{id}/generate" => secret_policies::generate [=> scaivault_engine::Generated], s(SecretsWrite), Admin,
        Action(A::Generate), "Generate a data object with the recipe, storing nothing";

    GET "/v1/webhooks" => webhooks::list [=> scaivault_engine::WebhookList], s(Admin), Admin, Action(A::WebhookRead), "List webhooks";
    POST "/v1/webhooks" => webhooks::create [scaivault_engine::WebhookRequest => scaivault_engine::WebhookView], s(Admin), Admin, Action(A::WebhookCreate),
        "Create a webhook (events, filters, signing secret)";
    GET "/v1/webhooks/{id}" => webhooks::get [=> scaivault_engine::WebhookDetail], s(Admin), Admin, Action(A::WebhookRead),
        "Get a webhook with delivery statistics";
    PATCH "/v1/webhooks/{id}" => webhooks::patch [scaivault_engine::WebhookRequest => scaivault_engine::WebhookView], s(Admin), Admin, Action(A::WebhookUpdate),
        "Update a webhook; a new secret with previous_secret_ttl keeps the old one signing too";
    DELETE "/v1/webhooks/{id}" => webhooks::delete, s(Admin), Admin, Action(A::WebhookDelete),
        "Delete a webhook";
    POST "/v1/webhooks/{id}/test" => webhooks::test [=> scaivault_engine::WebhookTested], s(Admin), Admin, Action(A::WebhookTest),
        "Send a webhook.test event now";
    GET "/v1/webhooks/{id}/deliveries" => webhooks::deliveries [=> scaivault_engine::DeliveryPage], s(Admin), Admin,
        Action(A::WebhookRead), "The delivery log, newest first";

    GET "/v1/subscriptions" => subscriptions::list [=> scaivault_engine::SubscriptionList], s(SubscriptionsRead), Subscription,
        Action(A::SubscriptionRead), "List the caller's subscriptions (an admin's: all)";
    POST "/v1/subscriptions" => subscriptions::create [scaivault_engine::SubscriptionRequest => scaivault_engine::SubscriptionView],
        s(SubscriptionsWrite), Subscription, Action(A::SubscriptionCreate),
        "Subscribe to events on paths the caller may read (webhook or polling delivery)";
    GET "/v1/subscriptions/{id}" => subscriptions::get [=> scaivault_engine::SubscriptionView], s(SubscriptionsRead), Subscription,
        Action(A::SubscriptionRead), "Get a subscription (owner or admin)";
    PATCH "/v1/subscriptions/{id}" => subscriptions::patch [scaivault_engine::SubscriptionRequest => scaivault_engine::SubscriptionView],
        s(SubscriptionsWrite), Subscription, Action(A::SubscriptionUpdate),
        "Change a subscription's paths, events, filters or delivery (owner or admin)";
    DELETE "/v1/subscriptions/{id}" => subscriptions::delete, s(SubscriptionsWrite), Subscription,
        Action(A::SubscriptionDelete), "Delete a subscription and its buffered events (owner or admin)";
    GET "/v1/subscriptions/{id}/poll" => subscriptions::poll [=> scaivault_engine::PollResult], s(SubscriptionsRead), SubscriptionPoll,
        Action(A::SubscriptionEvent), "Long-poll a polling subscription's events (owner only)";
    POST "/v1/subscriptions/{id}/ack" => subscriptions::ack [scaivault_engine::AckRequest => scaivault_engine::Acknowledged],
        s(SubscriptionsRead), SubscriptionPoll, Action(A::SubscriptionEvent),
        "Acknowledge polled events: they leave the buffer (owner only)";

    GET "/v1/secret/data/{*path}" => vault::kv_read, s(SecretsRead), Read, Secret(A::Read),
        "Vault KV v2: read a secret (current or ?version=N), in Vault's shape";
    PATCH "/v1/secret/data/{*path}" => vault::kv_patch [vault::KvPatch], Access::Both(SecretsWrite, SecretsRead), Write, ByHandler(A::Write),
        "Vault KV v2: a new version from the current one and a JSON merge patch (needs read and write)";
    POST "/v1/secret/data/{*path}" => vault::kv_write [vault::KvWrite], s(SecretsWrite), Write, ByHandler(A::Write),
        "Vault KV v2: write a new version ({data, options: {cas}})";
    PUT "/v1/secret/data/{*path}" => vault::kv_write [vault::KvWrite], s(SecretsWrite), Write, ByHandler(A::Write),
        "Vault KV v2: write a new version (as POST)";
    DELETE "/v1/secret/data/{*path}" => vault::kv_delete, s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: soft-delete the secret (all its versions, restorable)";
    POST "/v1/secret/delete/{*path}" => vault::kv_delete_versions [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: soft-delete the secret when `versions` names the current one";
    PUT "/v1/secret/delete/{*path}" => vault::kv_delete_versions [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: as POST (Vault's CLI writes with PUT)";
    POST "/v1/secret/undelete/{*path}" => vault::kv_undelete [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Restore),
        "Vault KV v2: restore a soft-deleted secret";
    PUT "/v1/secret/undelete/{*path}" => vault::kv_undelete [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Restore),
        "Vault KV v2: as POST";
    POST "/v1/secret/destroy/{*path}" => vault::kv_destroy [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: refused (ScaiVault destroys whole secrets: DELETE /v1/secret/metadata/{path})";
    PUT "/v1/secret/destroy/{*path}" => vault::kv_destroy [vault::KvVersions], s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: as POST";
    DELETE "/v1/secret/metadata/{*path}" => vault::kv_destroy_all, s(SecretsDelete), Delete, Secret(A::Delete),
        "Vault KV v2: destroy the secret and every version, for good";
    POST "/v1/secret/metadata/{*path}" => vault::kv_metadata_write [vault::KvMetadataWrite], s(SecretsWrite), Write, Secret(A::MetadataUpdate),
        "Vault KV v2: merge custom_metadata into the secret's metadata; no new version";
    PUT "/v1/secret/metadata/{*path}" => vault::kv_metadata_write [vault::KvMetadataWrite], s(SecretsWrite), Write, Secret(A::MetadataUpdate),
        "Vault KV v2: as POST";
    PATCH "/v1/secret/metadata/{*path}" => vault::kv_metadata_write [vault::KvMetadataWrite], s(SecretsWrite), Write, Secret(A::MetadataUpdate),
        "Vault KV v2: as POST (custom_metadata is always merged)";
    GET "/v1/secret/config" => vault::kv_config, Token, Auth, Action(A::MountsRead),
        "Vault KV v2: the mount's settings (fixed: no cas_required, no delete_version_after)";
    GET "/v1/secret/metadata/{*path}" => vault::kv_metadata, s(SecretsList), List, Secret(A::MetadataRead),
        "Vault KV v2: a secret's versions and custom metadata";
    GET "/v1/secret/list" => vault::kv_list, s(SecretsList), List, Action(A::List),
        "Vault KV v2: the names at the mount's root (what LIST /v1/secret/metadata/ reaches)";
    GET "/v1/secret/list/{*path}" => vault::kv_list, s(SecretsList), List, Action(A::List),
        "Vault KV v2: the names under a prefix (what LIST /v1/secret/metadata/{path} and ?list=true reach)";
    GET "/v1/sys/health" => vault::health, Public, Public, No, "Vault's health (200 unsealed, 503 sealed)";
    GET "/v1/sys/seal-status" => vault::seal_status, Public, Public, No, "Vault's seal status";
    GET "/v1/sys/mounts" => vault::mounts, Token, Auth, Action(A::MountsRead), "Vault's mounts: secret/, key/value version 2";
    GET "/v1/sys/internal/ui/mounts/{*path}" => vault::mount_of, Token, Auth, Action(A::MountsRead),
        "The mount a path is in (Vault clients ask it to learn the KV version)";
    POST "/v1/auth/approle/login" => vault::approle_login [vault::AppRoleLogin], Public, Public, Action(A::TokenIssue),
        "Vault's AppRole login over client credentials (role_id: client id, secret_id: client secret)";
    PUT "/v1/auth/approle/login" => vault::approle_login [vault::AppRoleLogin], Public, Public, Action(A::TokenIssue),
        "Vault's AppRole login (as POST: Vault's CLI writes with PUT)";
    POST "/v1/auth/token/create" => vault::token_create [vault::TokenCreate], Token, Grant, Action(A::TokenCreate),
        "Vault's token create: a child of the caller's token, never more than it (scopes, life), revoked with it";
    PUT "/v1/auth/token/create" => vault::token_create [vault::TokenCreate], Token, Grant, Action(A::TokenCreate),
        "Vault's token create (as POST)";
    POST "/v1/auth/token/revoke-self" => vault::revoke_self, Token, Auth, Action(A::TokenRevoke),
        "Vault's revoke-self: the caller's token and every token made with it";
    PUT "/v1/auth/token/revoke-self" => vault::revoke_self, Token, Auth, Action(A::TokenRevoke),
        "Vault's revoke-self (as POST)";
    POST "/v1/auth/token/renew-self" => vault::renew_self, Token, Auth, Action(A::TokenCreate),
        "Vault's renew-self: refused (ScaiVault tokens are not renewable)";
    PUT "/v1/auth/token/renew-self" => vault::renew_self, Token, Auth, Action(A::TokenCreate),
        "Vault's renew-self (as POST)";
    GET "/v1/auth/token/lookup-self" => vault::lookup_self, Token, Auth, Action(A::Whoami),
        "Vault's token lookup of the caller's own token (never its value)";

    GET "/v1/plugins" => plugins::list [=> scaivault_engine::PluginList], s(Admin), Admin, Action(A::PluginRead), "List plugins";
    POST "/v1/plugins" => plugins::install [plugins::InstallRequest => scaivault_engine::PluginInfo], s(Admin), Admin, Action(A::PluginInstall),
        "Install an external plugin (manifest + base64 wasm); pins its SHA-256", large_body;
    POST "/v1/plugins/verify" => plugins::verify [=> scaivault_engine::PluginVerification], s(Admin), Admin, Action(A::PluginVerify),
        "Check every plugin's bytes against its pinned SHA-256";
    GET "/v1/plugins/{name}" => plugins::get [=> scaivault_engine::PluginInfo], s(Admin), Admin, Action(A::PluginRead),
        "Get a plugin";
    DELETE "/v1/plugins/{name}" => plugins::remove, s(Admin), Admin, Action(A::PluginRemove),
        "Remove an external plugin";
    POST "/v1/generators/{name}/generate" => plugins::generate [plugins::GenerateRequest], s(SecretsWrite), Admin,
        Action(A::Generate), "Run a value generator without storing anything";
}

/// What answers a request no route serves (an unknown path, or a method the path does not
/// take): authenticated and audited like any other request that reaches the service, so a
/// token holder probing for endpoints leaves a trace, and a client without a token learns
/// nothing but `401`.
pub static UNROUTED: RouteSpec = RouteSpec {
    method: "ANY",
    path: "",
    access: Access::Token,
    category: Category::Admin,
    audit: Audited::Action(AuditAction::Request),
    summary: "no such endpoint",
    test_only: false,
    large_body: false,
    binary_body: false,
    handler: |f| on(f, || async {}),
    request: None,
    response: None,
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ROUTES;

    #[test]
    fn each_route_is_declared_once() {
        let mut seen = BTreeSet::new();
        for r in ROUTES {
            assert!(
                seen.insert((r.method, r.path)),
                "{} {} twice",
                r.method,
                r.path
            );
            assert!(!r.summary.is_empty());
            let _ = r.filter();
        }
    }
}
