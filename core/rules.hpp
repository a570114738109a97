#pragma once
// Scanner rules compiled once per config load and evaluated against every tracked message.
//
// Semantics (shared spec INTERFACE.md, issue 6):
// - Fields: from, to, cc, bcc (each address is tried as "Name <email>" and as the bare email),
//   subject (decoded), body (body_text), date, has_attachment (any part except an inline one
//   referenced by Content-ID, i.e. not a logo embedded in the HTML),
//   folder (the folder the message was seen in).
// - String operators (contains, equals, starts_with, ends_with and their not_ forms) are
//   case-insensitive (Unicode simple folding); `regex` is RE2 syntax as written (add (?i) for
//   case-insensitive) and matches anywhere unless anchored. For an address field a positive
//   operator holds when any address form matches; not_* holds when none does (so
//   not_contains on an empty Cc holds).
// - date: before/after compare with "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS]Z" (or with a
//   +HH:MM offset) or an RFC 5322 date; the string operators see "YYYY-MM-DDTHH:MM:SSZ". A
//   message without a date satisfies only the not_* operators.
// - has_attachment: equals / not_equals with "true" or "false".
// - Text is UTF-8 as parse_message delivers it (invalid sequences already replaced); RE2's '.'
//   does not match a stray invalid byte.
// - Groups nest ("all" = AND, "any" = OR); a group with no conditions holds.
// - A rule applies only to its users and folders (empty = all; folder names compare exactly,
//   except INBOX in any case); inactive rules are dropped.
// - subject and body are compared without leading/trailing whitespace.
//
// Cost: every distinct string/regex condition of a field goes into one RE2::Set per field, so
// a message costs one linear DFA walk per field (per address form for address fields) however
// many rules there are; rules are then indexed by a condition they cannot fire without (their
// "guard"), and only the rules whose guard matched, plus the few that have none, are walked.
#include "common/expected.hpp"
#include "core/config.hpp"
#include "core/references.hpp"
#include "core/matcher.hpp"
#include "protocols/mime/message.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::core {

struct rules_error {
  // One line naming the rule and the condition, e.g.
  // "rule 'Support desk': conditions[1].any[0] (subject regex '(urgent'): missing ): (urgent"
  std::string message;
};

// One condition that made a rule fire (for `explain`). The views point into the
// compiled_rules (or a copy of it) and stay valid while it lives.
struct fired_condition {
  std::string_view path;  // e.g. "conditions[1].any[0]"
  std::string_view field, op, value;
  // What matched: the address form ("Bob <bob@acme.example>"), the subject, up to ~120 bytes
  // of body around the match, the folder, the date (ISO 8601) or "true"/"false". Empty for a
  // not_* condition (nothing matched, that is why it held).
  std::string matched;
};

struct rule_hit {
  std::size_t rule_index = 0;  // index in the rule_config vector given to compile_rules
  std::string_view name;       // views into the compiled_rules: valid while it lives
  std::span<const action_config> actions;  // in configured order
  // tickets[i]: actions[i]'s ticket_regex compiled once (an empty matcher when it has none)
  std::span<const ticket_matcher> tickets;
  std::vector<fired_condition> because;
};

struct compile_options {
  // RE2 memory budget per field set (the DFA cache lives inside it).
  std::int64_t max_mem_per_field = std::int64_t{64} << 20;
};

// Statistics of a compiled rule set (for logs and the bench).
struct rules_stats {
  std::size_t rules = 0;            // active rules
  std::size_t unguarded_rules = 0;  // evaluated for every message in scope
  std::size_t set_patterns = 0;     // distinct (field, pattern) entries over all sets
};

class compiled_rules {
 public:
  compiled_rules();
  ~compiled_rules();
  // Copies share the same immutable compiled form (cheap: one per matcher actor is fine).
  compiled_rules(const compiled_rules&);
  compiled_rules& operator=(const compiled_rules&);
  compiled_rules(compiled_rules&&) noexcept;
  compiled_rules& operator=(compiled_rules&&) noexcept;

  rules_stats stats() const;

  struct impl;

 private:
  std::shared_ptr<const impl> impl_;  // immutable once compiled: shared by matcher threads
  friend expected<compiled_rules, rules_error> compile_rules(const std::vector<rule_config>&,
                                                            const compile_options&);
  friend std::vector<rule_hit> evaluate(const compiled_rules&, const mime::message&,
                                        std::string_view, std::string_view);
};

// Validates and compiles every active rule: invalid regex, invalid date for before/after, an
// operator that makes no sense for the field, an unknown field/operator/group, an invalid
// ticket_regex in an action are errors naming the rule and the condition (or action).
expected<compiled_rules, rules_error> compile_rules(const std::vector<rule_config>& rules,
                                                    const compile_options& opts = {});

// Whether an active rule for `user` may move, delete or mark mail read: the mailbox then
// opens its folders read-write (SELECT) and runs those actions after each durable batch.
bool has_server_actions(const std::vector<rule_config>& rules, std::string_view user);

// Why the mailbox of `user` must download message text (the IMAP text-part FETCH), or nullopt
// when the header path (headers + BODYSTRUCTURE only) gives every rule what it reads: a body
// condition or a ticket action (its comment is the reply text) of an active rule in scope,
// or [engine] fetch_text = "always". Decided once per config load (spawn and reload).
std::optional<std::string> text_needed_by(const engine_config& engine, const std::vector<rule_config>& rules,
                                          std::string_view user);

// The rules that fire for `msg` seen by `user` in `folder`, in configured order. Thread-safe
// (const) and never throws.
std::vector<rule_hit> evaluate(const compiled_rules& rules, const mime::message& msg,
                               std::string_view user, std::string_view folder);

// --- CRM linking: directory + reference numbers + rules and their actions -----------------
//
// link_message() is match_message() (contacts, accounts, user) plus what needs the RE2 code:
// item links by reference_matcher (an unknown reference becomes an "alert" reason: the
// operator lists them with `mailscan query alerts`), the rules that fired ("rule" reasons
// naming each condition) and their actions in configured order. Everything it decides is
// kept as link_reasons of the record, so the store needs no new layout and `explain` shows
// every cause. Reason kinds written here (target / cause):
//   item             reference / "subject token 'X' (kind)"
//   alert            token / item kind of the pattern (an unknown reference)
//   rule             rule name / "path field op 'value' matched '...'" (one per condition)
//   contact_created  email / rule name            (create_contact: unknown sender)
//   contact_account  email / account              (the account owning the sender's domain)
//   ticket           number / "rule 'R': number in subject" | "rule 'R': created"
//   ticket_status|ticket_assignee|ticket_priority  number / value (created tickets)
//   comment          number / reply-above text  (a reply to an existing ticket)
//   action           "move:F" | "delete" | "mark_read" / "rule 'R': pending ..."
// A created ticket's number is allocated by store::write() (prefix + sequence: TT1, TT2, ...);
// the record carries storage::new_ticket_marker until then. A reply (In-Reply-To/References)
// with no number in its subject updates the ticket of its thread's root (root_ticket_marker:
// the store looks the root up; a new ticket when it has none) with a comment.
struct crm_linker {
  std::shared_ptr<const directory> dir;
  std::shared_ptr<const reference_matcher> refs;  // null = known items by token only
  std::shared_ptr<const compiled_rules> rules;    // null = no rules
  // [engine] reply_marker (empty = the parser's): a ticket comment is the text above it,
  // extracted here when the message was parsed without it (mime::parse_options::reply_above).
  std::string reply_marker;
};

// Builds the reference matcher and compiles the rules of `cfg` (errors name the rule or
// pattern: the caller refuses the config).
// The reference patterns are cfg.item_patterns ([[item_pattern]]).
expected<crm_linker, rules_error> build_linker(const config& cfg, std::shared_ptr<const directory> dir);

storage::message_record link_message(const crm_linker& l, const mime::message& msg,
                                     const fetch_context& ctx);

} // namespace mscan::core
