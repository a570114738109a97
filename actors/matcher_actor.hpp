#pragma once
// A matcher: parses raw messages (MIME) and links them to the directory, the reference
// numbers and the scanner rules, then hands the records to the writer. Pure CPU work; a pool
// of them runs on CAF's scheduler threads.
#include "common/expected.hpp"
#include "actors/messages.hpp"
#include "core/directory.hpp"
#include "core/rules.hpp"
#include "protocols/mime/message.hpp"

#include <memory>

namespace mscan::actors {

struct matcher_settings {
  std::shared_ptr<const core::directory> dir;
  mime::parse_options parse;
  // Null = known items by subject token only / no rules (engine.cpp fills them from
  // core::build_linker once per config load).
  std::shared_ptr<const core::reference_matcher> refs = nullptr;
  std::shared_ptr<const core::compiled_rules> rules = nullptr;
};

// The settings every matcher of a process shares, from the config: the directory, and the
// rules and reference patterns compiled once. Error: a rule or pattern that does not compile.
expected<matcher_settings, std::string> matcher_settings_for(const core::config& cfg);

// Accepts: (match_atom, fetched_batch) -> (write_atom, matched_batch) to `writer`;
// (reload_atom, core::crm_linker): the next batch uses the new directory, references and
// rules (the old ones are freed when the last batch using them is done) — reloading never
// stops scanning. Local messages only (the linker is shared, not serialised).
caf::behavior matcher_actor(caf::event_based_actor* self, matcher_settings settings, caf::actor writer);

} // namespace mscan::actors

// A linker is shared, immutable state of this process (never sent to another node).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(mscan::core::crm_linker)
