// spdlog's daily_file_sink gives the day rotation, the "name_YYYY-MM-DD.log" file names and
// the retention (max files) the operators' log needs, with thread-safe sinks; writing our own
// rotating writer would repeat all of that.
#include "core/event_log.hpp"

#include <fmt/format.h>
#include <spdlog/sinks/daily_file_sink.h>
#include <spdlog/spdlog.h>

namespace mscan::core {

namespace {
// Values are quoted when they contain spaces or quotes, so every line splits unambiguously.
std::string field(std::string_view v) {
  if (v.empty())
    return "-";
  if (v.find_first_of(" \"=\t") == std::string_view::npos)
    return std::string{v};
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c == '\n' || c == '\r')
      c = ' ';
    out += c;
  }
  return out + "\"";
}
} // namespace

event_log::event_log(const engine_config& cfg, std::uint16_t keep_days) {
  info_ = cfg.info_logging;
  warning_ = cfg.warning_logging;
  try {
    std::filesystem::create_directories(cfg.log_dir);
    auto sink = std::make_shared<spdlog::sinks::daily_file_sink_mt>((cfg.log_dir / "MailScanner.log").string(), 0,
                                                                    0, false, keep_days);
    logger_ = std::make_shared<spdlog::logger>("mailscan", sink);
    logger_->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %v");
    logger_->set_level(spdlog::level::trace);
    logger_->flush_on(spdlog::level::warn);
  } catch (const std::exception& e) {
    error_ = fmt::format("cannot write logs in {}: {}", cfg.log_dir.string(), e.what());
  }
}

event_log::~event_log() { flush(); }

void event_log::write(log_level lvl, std::string_view event, std::string_view user, std::string_view host,
                      std::string_view folder, std::string_view detail) {
  if (lvl == log_level::info && !info_)
    return;
  if (lvl == log_level::warning && !warning_)
    return;
  if (!logger_)
    return;
  auto name = lvl == log_level::error ? "ERROR" : lvl == log_level::warning ? "WARN" : "INFO";
  auto line = fmt::format("{} event={} user={} host={} folder={} detail={}", name, event, field(user), field(host),
                          field(folder), field(detail));
  logger_->log(lvl == log_level::error ? spdlog::level::err
               : lvl == log_level::warning ? spdlog::level::warn
                                           : spdlog::level::info,
               line);
}

void event_log::set_levels(bool info, bool warning) {
  info_ = info;
  warning_ = warning;
}

void event_log::flush() {
  if (logger_)
    logger_->flush();
}

} // namespace mscan::core
