#pragma once
// Reference numbers in subjects: CRM items (OPP-1042, TT17, ...) found exactly as whole tokens,
// plus the references that look like one of an item kind's patterns but name no known item
// (the operator lists those as alerts instead of losing them).
//
// A token is a run of [A-Za-z0-9_-] with trailing '-'/'_' dropped (the same tokens as
// core::subject_tokens), so "OPP-1042" never matches inside "OPP-10421" or "XOPP-1042".
// Known items are one hash probe per token (ASCII case-insensitive); the patterns of every kind
// are one RE2::Set anchored at both ends of the token, so 10,000 patterns cost one DFA walk
// per token. RE2 keeps this linear in the subject whatever the patterns and the mail say.
#include "common/expected.hpp"
#include "core/config.hpp"

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mscan::core {

// A configurable reference shape for one item kind, e.g. {"opportunity", "OPP-\\d+"}.
// The regex must match a whole token; it is case-sensitive unless it says (?i).
struct reference_pattern {
  std::string kind;
  std::string regex;
};

struct reference_hit {
  std::string reference;  // the item's configured spelling when known, else the token as written
  std::string kind;       // the item's kind, else the kind of the first pattern that matched
  bool known = false;     // false: the pattern matched but no such item exists (an alert)
  std::size_t offset = 0; // byte offset of the token in the subject
};

struct references_error {
  std::string message;  // one line naming the pattern (never any mail content)
};

class reference_matcher {
 public:
  // Fails when a pattern is not a valid RE2 regex or the set cannot be compiled.
  static expected<reference_matcher, references_error>
  build(const std::vector<item_config>& items, const std::vector<reference_pattern>& patterns);

  // Every reference token in `subject`, in subject order, each reference once.
  std::vector<reference_hit> find(std::string_view subject) const;

  // Item references that can never be found because they are not one token (e.g. "Q 2024/17"
  // or "OPP-1-"): the config loader should warn about them.
  const std::vector<std::string>& unmatchable_references() const;

  std::size_t item_count() const;
  std::size_t pattern_count() const;

 private:
  struct impl;
  std::shared_ptr<const impl> impl_;  // immutable once built: shared by every matcher thread
};

// The ticket number named by `ticket_regex` in a subject (create_or_update_ticket; only the
// subject, never the body). The first match whose edges are token boundaries wins; when the
// regex has a capturing group, group 1 is the number, else the whole match.
class ticket_matcher {
 public:
  static expected<ticket_matcher, references_error> compile(std::string_view ticket_regex);
  std::optional<std::string> find(std::string_view subject) const;
  const std::string& pattern() const;

 private:
  struct impl;
  std::shared_ptr<const impl> impl_;
};

// Convenience for one-off use: compiles `ticket_regex` on every call.
expected<std::optional<std::string>, references_error> ticket_number(std::string_view subject,
                                                                     std::string_view ticket_regex);

} // namespace mscan::core
