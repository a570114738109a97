#pragma once
// The operator's daily log: one file a day, MailScanner_YYYY-MM-DD.log in log_dir, one line an
// event: time, level, stable event name, user, host, folder, detail. Errors are always
// written; warnings and info per the config (changeable at run time). Thread-safe.
#include "core/config.hpp"

#include <atomic>
#include <memory>
#include <string_view>

namespace spdlog {
class logger;
}

namespace mscan::core {

enum class log_level { info, warning, error };

class event_log {
 public:
  // Creates log_dir if needed; on failure logs go to stderr only (and `error` says why).
  explicit event_log(const engine_config& cfg, std::uint16_t keep_days = 30);
  ~event_log();
  event_log(const event_log&) = delete;
  event_log& operator=(const event_log&) = delete;

  void write(log_level lvl, std::string_view event, std::string_view user, std::string_view host,
             std::string_view folder, std::string_view detail);
  void set_levels(bool info, bool warning);
  void flush();
  const std::string& error() const { return error_; }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::atomic<bool> info_{false}, warning_{true};
  std::string error_;
};

} // namespace mscan::core
