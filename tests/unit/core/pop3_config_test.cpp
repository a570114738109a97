// [[mailbox]] type = "pop3": defaults, refusals, and the mailboxes_file (CSV / JSON) column.
#include "core/config.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace mscan::core;

namespace {
auto parse(std::string_view text) { return parse_config(text, "/etc/mailscan/test.toml"); }

std::string mailbox(std::string_view extra) {
  return "[[mailbox]]\nuser = \"legacy\"\nhost = \"pop.example\"\npassword = \"x\"\n" + std::string(extra);
}
} // namespace

TEST_CASE("pop3 mailboxes: type, default ports, IMAP stays the default", "[unit][config]") {
  auto imap = parse(mailbox(""));
  REQUIRE(imap);
  CHECK(imap->mailboxes[0].type == mail_protocol::imap);
  CHECK(imap->mailboxes[0].port == 993);
  auto tls = parse(mailbox("type = \"pop3\"\n"));
  REQUIRE(tls);
  CHECK(tls->mailboxes[0].type == mail_protocol::pop3);
  CHECK(tls->mailboxes[0].port == 995);
  auto stls = parse(mailbox("type = \"pop3\"\nsecurity = \"starttls\"\nfolders = \"INBOX\"\n"));
  REQUIRE(stls);
  CHECK(stls->mailboxes[0].port == 110);
  CHECK(to_string(mail_protocol::pop3) == "pop3");
}

TEST_CASE("pop3 mailboxes: what POP3 cannot do is refused with the key named", "[unit][config]") {
  auto err = [](std::string_view extra) {
    auto r = parse(mailbox(extra));
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK_THAT(err("type = \"pop3\"\nfolders = \"INBOX; Sent\"\n"), Catch::Contains("key 'folders': POP3 has only the INBOX"));
  CHECK_THAT(err("type = \"pop3\"\nscan = \"unread\"\n"), Catch::Contains("key 'scan'"));
  CHECK_THAT(err("type = \"pop3\"\nport = 110\n"), Catch::Contains("key 'port': 110"));
  CHECK_THAT(err("type = \"smtp\"\n"), Catch::Contains("type"));
}

TEST_CASE("pop3 mailboxes: the type column of a mailboxes_file (CSV and JSON)", "[unit][config]") {
  auto dir = std::filesystem::temp_directory_path() / ("mscan-pop3-config-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "mailboxes.csv") << "user,address,type,host,port,security,auth,username,password,folders,scan\n"
                                          "a,a@x,pop3,127.0.0.1,,tls,password,a,pw,*,all\n"
                                          "b,b@x,,127.0.0.1,143,starttls,password,b,pw,*,all\n";
  std::ofstream(dir / "mailboxes.json")
    << R"([{"user": "c", "type": "pop3", "host": "127.0.0.1", "security": "none", "password": "pw"}])";
  for (auto [file, n] : {std::pair{"mailboxes.csv", 2}, std::pair{"mailboxes.json", 1}}) {
    std::ofstream(dir / "m.toml") << "[engine]\nmailboxes_file = \"" << file << "\"\n";
    auto r = load_config(dir / "m.toml");
    INFO((r ? "" : r.error().message));
    REQUIRE(r);
    REQUIRE(r->mailboxes.size() == static_cast<std::size_t>(n));
    CHECK(r->mailboxes[0].type == mail_protocol::pop3);
    CHECK(r->mailboxes[0].port == (n == 2 ? 995 : 110));
    if (n == 2)
      CHECK(r->mailboxes[1].type == mail_protocol::imap);
  }
  std::filesystem::remove_all(dir);
}
