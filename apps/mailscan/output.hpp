#pragma once
// Human-readable and JSON renderings of what the store holds (shapes: INTERFACE.md).
#include "core/config.hpp"
#include "storage/store.hpp"

#include <nlohmann/json.hpp>

#include <ostream>
#include <vector>

namespace mscan::apps {

std::string iso8601(std::int64_t unix_seconds);  // "2026-11-20T10:00:00Z"
nlohmann::json messages_json(const std::vector<storage::message_record>& msgs);
nlohmann::json status_json(const std::vector<storage::mailbox_state>& states);
void print_messages(std::ostream& os, const std::vector<storage::message_record>& msgs);
void print_status(std::ostream& os, const std::vector<storage::mailbox_state>& states);
void print_explain(std::ostream& os, const storage::message_record& rec);

// Tickets, rule-created contacts and unknown-reference alerts are derived from the link
// reasons the matcher stored with each message (core/rules.hpp, link_message): `msgs` is
// every tracked message, any order. Shapes: INTERFACE.md ("alerts" is ours:
// {"alerts": [{"reference", "kind", "message_id", "subject", "date"}]}).
nlohmann::json tickets_json(const std::vector<storage::message_record>& msgs);
nlohmann::json contacts_json(const core::config& cfg, const std::vector<storage::message_record>& msgs);
nlohmann::json alerts_json(const std::vector<storage::message_record>& msgs);
// One line per entry of the JSON above (the text form of `query tickets|contacts|alerts`).
void print_list(std::ostream& os, const nlohmann::json& list_object);
// Per-rule statistics for `status`: every configured rule with the number of tracked
// messages it fired for and when that last happened (the store's rule_stats counters):
// [{"name", "active", "hits", "last_hit": ISO 8601 | null}].
nlohmann::json rules_json(const core::config& cfg, const std::vector<storage::rule_stat>& stats);

// `mailscan demo`: the embedded simulator, a generated config, one pass, a summary.
int run_demo(const std::string& dir, std::size_t mailboxes, std::size_t messages, const std::string& eml_dir = {});

} // namespace mscan::apps
