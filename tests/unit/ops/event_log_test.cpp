// The daily log: the day turns at midnight in the configured zone (an injected clock, no
// waiting), levels change at run time, and files older than the retention are deleted.
#include "core/event_log.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

using namespace mscan;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "mscan-event-log-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

std::chrono::system_clock::time_point utc(int y, unsigned mo, unsigned d, int h, int mi, int s) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = static_cast<int>(mo) - 1;
  tm.tm_mday = static_cast<int>(d);
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::set<std::string> files(const fs::path& dir) {
  std::set<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    out.insert(e.path().filename().string());
  return out;
}

} // namespace

TEST_CASE("event log: the day turns at midnight UTC, one file a day", "[unit][ops]") {
  auto dir = temp_dir();
  core::engine_config cfg;
  cfg.log_dir = dir;
  cfg.log_timezone = "UTC";
  auto now = utc(2026, 11, 23, 23, 59, 59);
  core::event_log log(cfg, [&] { return now; });
  log.write(core::log_level::error, "before_midnight", "alice", "h", "INBOX", "x");
  now = utc(2026, 11, 24, 0, 0, 1);
  log.write(core::log_level::error, "after_midnight", "alice", "h", "INBOX", "y");
  log.flush();
  auto day1 = read(dir / "MailScanner_2026-11-23.log");
  auto day2 = read(dir / "MailScanner_2026-11-24.log");
  CHECK(day1.starts_with("2026-11-23T23:59:59.000+00:00 ERROR event=before_midnight user=alice host=h "
                         "folder=INBOX detail=x\n"));
  CHECK(day1.find("after_midnight") == std::string::npos);
  CHECK(day2.starts_with("2026-11-24T00:00:01.000+00:00 ERROR event=after_midnight"));
  fs::remove_all(dir);
}

TEST_CASE("event log: midnight in an IANA zone (Europe/Berlin, UTC+1 in November)", "[unit][ops]") {
  REQUIRE_FALSE(core::log_timezone_problem("Europe/Berlin"));
  REQUIRE(core::log_timezone_problem("Mars/Olympus"));
  auto dir = temp_dir();
  core::engine_config cfg;
  cfg.log_dir = dir;
  cfg.log_timezone = "Europe/Berlin";
  auto now = utc(2026, 11, 23, 22, 59, 0);  // 23:59 in Berlin
  core::event_log log(cfg, [&] { return now; });
  log.write(core::log_level::error, "late", "", "", "", "");
  now = utc(2026, 11, 23, 23, 1, 0);  // 00:01 on the 24th in Berlin, still the 23rd in UTC
  log.write(core::log_level::error, "next_day", "", "", "", "");
  log.flush();
  CHECK(read(dir / "MailScanner_2026-11-23.log").starts_with("2026-11-23T23:59:00.000+01:00 ERROR event=late"));
  CHECK(read(dir / "MailScanner_2026-11-24.log").starts_with("2026-11-24T00:01:00.000+01:00 ERROR event=next_day"));
  fs::remove_all(dir);
}

TEST_CASE("event log: warning and info levels change at run time", "[unit][ops]") {
  auto dir = temp_dir();
  core::engine_config cfg;
  cfg.log_dir = dir;
  cfg.log_timezone = "UTC";
  cfg.info_logging = false;
  cfg.warning_logging = false;
  const auto now = utc(2026, 11, 24, 12, 0, 0);
  core::event_log log(cfg, [&] { return now; });
  log.write(core::log_level::info, "info_off", "", "", "", "");
  log.write(core::log_level::warning, "warning_off", "", "", "", "");
  log.write(core::log_level::error, "error_always", "", "", "", "");
  log.set_levels(true, true);  // what a SIGHUP reload does (actors/engine.cpp)
  log.write(core::log_level::info, "info_on", "", "", "", "");
  log.write(core::log_level::warning, "warning_on", "", "", "", "");
  log.flush();
  auto text = read(dir / "MailScanner_2026-11-24.log");
  CHECK(text.find("info_off") == std::string::npos);
  CHECK(text.find("warning_off") == std::string::npos);
  CHECK(text.find("ERROR event=error_always") != std::string::npos);
  CHECK(text.find("INFO event=info_on") != std::string::npos);
  CHECK(text.find("WARN event=warning_on") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("event log: files older than log_retention_days are deleted, others kept", "[unit][ops]") {
  auto dir = temp_dir();
  for (auto name : {"MailScanner_2026-10-01.log", "MailScanner_2026-11-20.log", "MailScanner_2026-11-21.log",
                    "MailScanner_2026-11-22.log", "MailScanner_2026-11-23.log", "MailScanner_notadate.log",
                    "other_2026-01-01.log"})
    std::ofstream(dir / name) << "old\n";
  core::engine_config cfg;
  cfg.log_dir = dir;
  cfg.log_timezone = "UTC";
  cfg.log_retention_days = 3;  // today and the two days before
  auto now = utc(2026, 11, 24, 8, 0, 0);
  {
    core::event_log log(cfg, [&] { return now; });
    log.write(core::log_level::error, "e", "", "", "", "");
  }
  CHECK(files(dir) == std::set<std::string>{"MailScanner_2026-11-22.log", "MailScanner_2026-11-23.log",
                                            "MailScanner_2026-11-24.log", "MailScanner_notadate.log",
                                            "other_2026-01-01.log"});
  cfg.log_retention_days = 0;  // keep everything
  now = utc(2027, 1, 1, 8, 0, 0);
  {
    core::event_log log(cfg, [&] { return now; });
    log.write(core::log_level::error, "e", "", "", "", "");
  }
  CHECK(files(dir).count("MailScanner_2026-11-22.log") == 1);
  fs::remove_all(dir);
}

TEST_CASE("config: log_timezone and log_retention_days", "[unit][ops]") {
  auto cfg = core::parse_config("[engine]\nlog_timezone = \"America/New_York\"\nlog_retention_days = 7\n", "/etc/m.toml");
  REQUIRE(cfg);
  CHECK(cfg->engine.log_timezone == "America/New_York");
  CHECK(cfg->engine.log_retention_days == 7);
  auto defaults = core::parse_config("", "/etc/m.toml");
  REQUIRE(defaults);
  CHECK(defaults->engine.log_timezone == "local");
  CHECK(defaults->engine.log_retention_days == 30);
  auto bad = core::parse_config("[engine]\nlog_timezone = \"Nowhere/City\"\n", "/etc/m.toml");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("log_timezone") != std::string::npos);
  CHECK(bad.error().message.find("Nowhere/City") != std::string::npos);
}
