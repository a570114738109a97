#pragma once
// The operator's daily log: one file a day, MailScanner_YYYY-MM-DD.log in log_dir, one line an
// event: time, level, stable event name, user, host, folder, detail. Errors are always
// written; warnings and info per the config (changeable at run time). The day turns at
// midnight in `log_timezone`; files older than `log_retention_days` are deleted when a day's
// file is opened. Thread-safe.
#include "core/config.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mscan::core {

enum class log_level { info, warning, error };

using log_clock_fn = std::function<std::chrono::system_clock::time_point()>;

// Why `zone` cannot be a log_timezone ("local", "UTC" or a known IANA name), or nullopt.
std::optional<std::string> log_timezone_problem(std::string_view zone);

class event_log {
 public:
  // Creates log_dir if needed; on failure logs go nowhere (and `error` says why). `now` is
  // for tests (a day boundary without waiting for midnight); empty = the system clock.
  explicit event_log(const engine_config& cfg, log_clock_fn now = {});
  ~event_log();
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  void write(log_level lvl, std::string_view event, std::string_view user, std::string_view host,
             std::string_view folder, std::string_view detail);
  void set_levels(bool info, bool warning);
  void flush();
  const std::string& error() const { return error_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::atomic<bool> info_{false}, warning_{true};
  std::string error_;
};

} // namespace mscan::core
