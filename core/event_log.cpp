// spdlog's daily_file_sink turns the day in the machine's local zone only and its retention
// forgets files it did not create itself (a gap of one day stops the clean-up), so the day
// file is kept here: Howard Hinnant's date/tz (Debian's libhowardhinnant-date-dev, the basis
// of C++20's <chrono> zones, which g++ 12 lacks) gives the zone's midnight.
#include "core/event_log.hpp"

#include <date/tz.h>
#include <fmt/format.h>

#include <fstream>
#include <mutex>

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

bool is_utc(std::string_view zone) { return zone == "UTC" || zone == "utc" || zone == "Etc/UTC"; }

// nullptr = UTC. "local" without a usable /etc/localtime is UTC too, as libc's localtime is.
const date::time_zone* find_zone(std::string_view zone) {
  if (is_utc(zone))
    return nullptr;
  try {
    return zone == "local" ? date::current_zone() : date::locate_zone(zone);
  } catch (const std::exception&) {
    return nullptr;
  }
}

constexpr std::string_view prefix = "MailScanner_", suffix = ".log";
} // namespace

std::optional<std::string> log_timezone_problem(std::string_view zone) {
  if (zone == "local" || is_utc(zone))
    return std::nullopt;
  try {
    date::locate_zone(zone);
    return std::nullopt;
  } catch (const std::exception&) {
    return fmt::format("unknown time zone '{}' (expected \"local\", \"UTC\" or an IANA name such as "
                       "\"Europe/Berlin\")",
                       zone);
  }
}

struct event_log::impl {
  std::mutex mu;
  std::filesystem::path dir;
  const date::time_zone* zone = nullptr;
  std::uint32_t keep_days = 30;
  log_clock_fn now;
  std::string day;  // YYYY-MM-DD of the open file
  std::ofstream out;

  // Deletes the day files older than the newest keep_days days (today included).
  void prune(date::local_days today) {
    if (keep_days == 0)
      return;
    const auto oldest_kept = date::format("%F", today - date::days{keep_days - 1});
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const auto name = e.path().filename().string();
      if (name.size() != prefix.size() + 10 + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix))
        continue;
      const auto d = name.substr(prefix.size(), 10);  // YYYY-MM-DD sorts as its date
      if (d < oldest_kept) {
        std::error_code rm;
        std::filesystem::remove(e.path(), rm);
      }
    }
  }
};

event_log::event_log(const engine_config& cfg, log_clock_fn now) : impl_(std::make_unique<impl>()) {
  info_ = cfg.info_logging;
  warning_ = cfg.warning_logging;
  impl_->dir = cfg.log_dir;
  impl_->zone = find_zone(cfg.log_timezone);
  impl_->keep_days = cfg.log_retention_days;
  impl_->now = now ? std::move(now) : log_clock_fn{[] { return std::chrono::system_clock::now(); }};
  std::error_code ec;
  std::filesystem::create_directories(cfg.log_dir, ec);
  if (ec)
    error_ = fmt::format("cannot write logs in {}: {}", cfg.log_dir.string(), ec.message());
}

event_log::~event_log() { flush(); }

void event_log::write(log_level lvl, std::string_view event, std::string_view user, std::string_view host,
                      std::string_view folder, std::string_view detail) {
  if (lvl == log_level::info && !info_)
    return;
  if (lvl == log_level::warning && !warning_)
    return;
  if (!error_.empty())
    return;
  auto& d = *impl_;
  std::lock_guard lock(d.mu);
  const auto t = date::floor<std::chrono::milliseconds>(d.now());
  const auto offset = d.zone ? d.zone->get_info(t).offset : std::chrono::seconds{0};
  const auto local = date::local_time<std::chrono::milliseconds>{t.time_since_epoch() + offset};
  const auto today = date::floor<date::days>(local);
  if (auto day = date::format("%F", today); day != d.day || !d.out.is_open()) {
    d.out.close();
    d.out.clear();
    d.out.open(d.dir / fmt::format("{}{}{}", prefix, day, suffix), std::ios::app | std::ios::binary);
    d.day = std::move(day);
    d.prune(today);
  }
  const auto off_min = std::chrono::duration_cast<std::chrono::minutes>(offset).count();
  const auto name = lvl == log_level::error ? "ERROR" : lvl == log_level::warning ? "WARN" : "INFO";
  // Every line is flushed: the dashboard shows a mailbox's recent lines while the engine runs.
  d.out << fmt::format("{}{}{:02}:{:02} {} event={} user={} host={} folder={} detail={}\n",
                       date::format("%FT%T", local), off_min < 0 ? '-' : '+', std::abs(off_min) / 60,
                       std::abs(off_min) % 60, name, event, field(user), field(host), field(folder), field(detail))
        << std::flush;
}

void event_log::set_levels(bool info, bool warning) {
  info_ = info;
  warning_ = warning;
}

void event_log::flush() {
  std::lock_guard lock(impl_->mu);
  if (impl_->out.is_open())
    impl_->out.flush();
}

} // namespace mscan::core
