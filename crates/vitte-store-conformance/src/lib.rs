//! The storage conformance suite: one set of behavioural cases that every
//! adapter of [`vitte_domain::ports::Store`] must pass unchanged, so the
//! embedded engine and the scaled-out engine cannot drift apart.
//!
//! An adapter runs it from an integration test:
//!
//! ```ignore
//! async fn fresh_store() -> Arc<dyn Store> { /* new, migrated store */ }
//! vitte_store_conformance::conformance_suite!(fresh_store);
//! ```
//!
//! Each case gets a store of its own, so cases run in parallel.

pub mod broadcasts;
pub mod dialogs;
pub mod entitlements;
pub mod fixtures;
pub mod messages;
pub mod payments;
pub mod personas;
pub mod replies;
pub mod spend;
pub mod store;
pub mod updates;
pub mod users;

/// Expands to one `#[tokio::test]` per case, grouped in modules by area.
/// `$fresh` is an `async fn() -> Arc<dyn Store>` in the calling module that
/// returns a new, migrated store.
#[macro_export]
macro_rules! conformance_suite {
    ($fresh:path) => {
        $crate::__conformance_cases! { $fresh;
            store { ping_and_schema_are_current }
            users {
                upsert_creates_then_refreshes,
                lookups_by_either_key,
                accept_terms_records_version,
                setters_refuse_missing_rows,
            }
            personas {
                upsert_replaces_card_and_keeps_picture,
                listing_is_by_name_and_respects_listed,
            }
            dialogs {
                concurrent_opens_share_one_dialog,
                reset_deactivates_and_opens_new,
                intimacy_accumulates,
            }
            messages {
                recent_returns_newest_oldest_first,
                complete_reply_answers_pending_messages,
                complete_reply_is_atomic,
                recovery_lists_only_old_pending,
                set_state_checks_ids,
                summary_is_one_row_and_facts_accumulate,
            }
            updates {
                duplicates_are_recorded_once,
                concurrent_duplicates_are_recorded_once,
                claims_lease_and_expire,
                concurrent_claims_never_overlap,
                a_senders_updates_are_claimed_one_at_a_time,
                concurrent_claims_keep_each_senders_order,
                prune_keeps_pending,
            }
            entitlements {
                subscription_grants_extend,
                unlocks_expire_and_extend,
                credits_never_go_negative,
                concurrent_spends_respect_balance,
            }
            payments {
                record_is_idempotent_by_provider_id,
                settle_applies_grant_once,
                settle_refuses_closed_payments,
                transition_is_compare_and_set,
            }
            broadcasts { deliveries_count_once }
            replies {
                lease_is_exclusive_until_it_expires,
                lease_is_renewed_by_its_owner,
                lease_is_released_only_by_its_owner,
                concurrent_leases_have_one_winner,
                a_refused_lease_leaves_a_request,
                append_from_update_finishes_its_update,
                complete_reply_adds_intimacy_and_releases_the_lease,
                append_is_idempotent_by_update,
                concurrent_appends_of_one_update_store_one,
                reopen_requeues_failed_messages,
                reopen_supersedes_a_successful_exchange,
                reopen_only_the_last_exchange,
                reopen_with_nothing_to_retry_is_empty,
            }
            spend {
                no_usage_is_empty,
                usage_sums_per_user_and_globally_by_model,
                usage_counts_from_since_on,
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($fresh:path; $($area:ident { $($case:ident),* $(,)? })*) => {
        $(
            mod $area {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        $crate::$area::$case($fresh().await).await;
                    }
                )*
            }
        )*
    };
}
