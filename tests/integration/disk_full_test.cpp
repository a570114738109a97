// Disk full: the store lives on a tiny tmpfs that fills up mid-scan. The engine must report
// the failure (exit 3, classified per mailbox, in the daily log), keep its checkpoints where
// the durable data is, and — once space returns — finish the scan with every message tracked
// exactly once.
#include "tests/support/dovecot_fixture.hpp"
#include "tests/support/mailscan_cli.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>
#include <sys/mount.h>
#include <sys/wait.h>

namespace fs = std::filesystem;
using namespace mscan;

namespace {

// A tmpfs of a given size, unmounted when the test ends (also when it fails).
struct small_disk {
  fs::path dir;
  explicit small_disk(fs::path d, std::size_t kib) : dir(std::move(d)) {
    fs::create_directories(dir);
    auto opts = fmt::format("size={}k,mode=0755", kib);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
      FAIL(fmt::format("cannot mount a tmpfs at {} (the disk-full test needs root): {}", dir.string(),
                       std::strerror(errno)));
  }
  void grow(std::size_t kib) {
    auto opts = fmt::format("size={}k,mode=0755", kib);
    REQUIRE(::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) == 0);
  }
  ~small_disk() { ::umount2(dir.c_str(), MNT_DETACH); }
};

std::string read_logs(const fs::path& dir) {
  std::string all;
  for (auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    all += ss.str();
  }
  return all;
}

} // namespace

TEST_CASE("disk full: reported, nothing lost, finished once space returns", "[integration][diskfull]") {
  constexpr int count = 3000;
  test::dovecot_fixture dc{{{{"alice", "pw"}}}};
  for (int i = 0; i < count; ++i)
    dc.seed("alice", "INBOX",
            fmt::format("From: c{0}@customer.example\r\nTo: alice@corp.example\r\nSubject: Ticket {0} "
                        "about something that needs a fairly long subject line to take some space\r\n"
                        "Message-ID: <full-{0}@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
                        "body {0}\r\n",
                        i));
  auto dir = test::unique_test_dir("diskfull");
  small_disk disk{dir / "data", 6 * 1024};
  std::ofstream(dir / "mailscan.toml") << fmt::format(
    "[engine]\ndata_dir = \"data\"\nlog_dir = \"logs\"\ndays_back = 0\nbatch_size = 100\nmin_free_disk_mb = 4\n\n"
    "[[mailbox]]\nuser = \"alice\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n"
    "username = \"alice\"\npassword = \"pw\"\nfolders = \"INBOX\"\n",
    dc.imap_port());
  auto conf = (dir / "mailscan.toml").string();

  auto full = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(full.out);
  CHECK(full.code == 3);
  CHECK(full.out.find("alice: Error (disk_full)") != std::string::npos);
  CHECK(read_logs(dir / "logs").find("event=scan_failed user=alice") != std::string::npos);

  // Whatever was acknowledged is readable and consistent: no duplicates, no half records.
  auto partial = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "messages", "--json"}).out);
  CHECK(partial.at("messages").size() < static_cast<std::size_t>(count));

  disk.grow(64 * 1024);
  auto again = test::run_mailscan({"run", "--config", conf, "--once"});
  INFO(again.out);
  REQUIRE(again.code == 0);
  auto msgs = nlohmann::json::parse(test::run_mailscan({"query", "--config", conf, "messages", "--json"}).out)
                .at("messages");
  std::set<std::string> ids;
  std::size_t sightings = 0;
  for (auto& m : msgs) {
    CHECK(ids.insert(m.at("message_id").get<std::string>()).second);
    sightings += m.at("sightings").size();
  }
  CHECK(msgs.size() == static_cast<std::size_t>(count));
  CHECK(sightings == static_cast<std::size_t>(count));
}
