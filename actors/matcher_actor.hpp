#pragma once
// A matcher: parses raw messages (MIME) and links them to the directory, then hands the
// records to the writer. Pure CPU work; a pool of them runs on CAF's scheduler threads.
#include "actors/messages.hpp"
#include "core/directory.hpp"
#include "protocols/mime/message.hpp"

#include <memory>

namespace mscan::actors {

struct matcher_settings {
  std::shared_ptr<const core::directory> dir;
  mime::parse_options parse;
};

// Accepts: (match_atom, fetched_batch) -> (write_atom, matched_batch) to `writer`.
caf::behavior matcher_actor(caf::event_based_actor* self, matcher_settings settings, caf::actor writer);

} // namespace mscan::actors
