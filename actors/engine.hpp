#pragma once
// Builds the actor pipeline for one `mailscan run` and drives it to completion.
// Kept free of CAF types so that the CLI does not compile CAF headers.
#include "common/expected.hpp"
#include "core/config.hpp"

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace mscan::actors {

struct pass_result {
  std::string user;
  bool ok = false;
  std::string reason, detail;
  std::uint64_t fetched = 0, new_messages = 0, new_sightings = 0;
};

struct engine_report {
  std::vector<pass_result> passes;
  std::uint64_t messages_in_store = 0;
};

struct engine_options {
  bool once = true;
  const std::atomic<bool>* stop = nullptr;  // set by a signal handler: orderly shutdown
};

// Errors: the store could not be opened (message names the directory and the cause).
expected<engine_report, std::string> run_engine(const core::config& cfg, const engine_options& opts);

} // namespace mscan::actors
