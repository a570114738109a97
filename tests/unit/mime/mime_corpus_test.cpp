// Every real-world message parses, and From/To/Cc/Subject/Message-ID/attachment names match
// what Python's email package reads (tests/fixtures/mime/corpus_expectations.json, made by
// gen_corpus_expectations.py), except where corpus_deviations.json records that we read a
// message differently on purpose, with the reason.
//
// Deliberate differences applied to every message (not listed per file):
//  - domains are lower-cased (parse_address_list contract); Python keeps them as written;
//  - display names and subjects are trimmed; Python keeps surrounding whitespace.
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace mscan::mime;
using nlohmann::json;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trimmed(std::string s) {
  auto b = s.find_first_not_of(" \t\r\n");
  auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

json python_addresses(const json& list) {
  if (!list.is_array()) return list; // "ERR": Python could not read the field
  json out = json::array();
  for (const auto& pair : list) {
    std::string name = trimmed(pair[0].get<std::string>());
    std::string email = pair[1].get<std::string>();
    if (auto at = email.rfind('@'); at != std::string::npos)
      for (std::size_t k = at + 1; k < email.size(); ++k)
        if (email[k] >= 'A' && email[k] <= 'Z') email[k] = char(email[k] + 32);
    out.push_back({name, email});
  }
  return out;
}

json ours(const std::vector<address>& v) {
  json out = json::array();
  for (const auto& a : v) out.push_back({a.display_name, a.email});
  return out;
}

} // namespace

TEST_CASE("real-world corpus matches pinned expectations", "[unit]") {
  const std::filesystem::path fixtures = std::filesystem::path(MAILSCAN_SOURCE_DIR) / "tests/fixtures/mime";
  json expected = json::parse(read_file(fixtures / "corpus_expectations.json"));
  json deviations = json::parse(read_file(fixtures / "corpus_deviations.json"));
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(MAILSCAN_CORPUS_DIR)) {
    if (entry.path().extension() != ".eml") continue;
    const std::string name = entry.path().filename().string();
    INFO(name);
    ++files;
    REQUIRE(expected.contains(name)); // a new corpus file needs regenerated expectations
    json want = expected[name];
    json dev = deviations.contains(name) ? deviations[name] : json::object();
    for (const char* f : {"from", "to", "cc"}) want[f] = python_addresses(want[f]);
    want["subject"] = want["subject"].is_null() ? std::string() : trimmed(want["subject"].get<std::string>());
    if (want["message_id"].is_null()) want["message_id"] = "";
    for (auto it = dev.begin(); it != dev.end(); ++it)
      if (it.key() != "why") want[it.key()] = it.value();

    std::string raw = read_file(entry.path());
    message m = parse_message(raw);
    json names = json::array();
    for (const auto& a : m.attachments)
      if (!a.name.empty()) names.push_back(a.name);
    CHECK(ours(m.from) == want["from"]);
    CHECK(ours(m.to) == want["to"]);
    CHECK(ours(m.cc) == want["cc"]);
    CHECK(m.subject == want["subject"].get<std::string>());
    CHECK(m.message_id == want["message_id"].get<std::string>());
    CHECK(names == want["attachments"]);
    CHECK(m.warnings.size() <= 64);
    // every string is valid UTF-8, whatever bytes the message had
    std::vector<std::string_view> strings = {m.message_id, m.subject, m.normalized_subject,
                                             m.thread_index, m.thread_topic, m.body_text, m.reply_above};
    for (const auto* l : {&m.from, &m.sender, &m.reply_to, &m.to, &m.cc, &m.bcc, &m.delivered_to})
      for (const auto& a : *l) strings.insert(strings.end(), {a.display_name, a.email, a.normalized});
    for (const auto& a : m.attachments) strings.insert(strings.end(), {a.name, a.type, a.content_id});
    for (const auto& r : m.references) strings.push_back(r);
    for (const auto& w : m.warnings) strings.push_back(w);
    for (std::string_view s : strings) CHECK(mscan::mime::detail::is_valid_utf8(s));
  }
  CHECK(files == expected.size());
  CHECK(files >= 148);
}

TEST_CASE("corpus spot checks beyond the Python comparison", "[unit]") {
  auto load = [](const char* f) { return parse_message(read_file(std::string(MAILSCAN_CORPUS_DIR) + "/" + f)); };
  auto cal = load("140-gmail-calendar-invite.eml");
  REQUIRE(cal.calendar);
  CHECK(cal.calendar->method == "REQUEST");
  CHECK(cal.calendar->uid == "1utaf3eftt1agbnisfcc3a5ps0@google.com");
  CHECK(cal.calendar->dtstart == "20240411T110000");
  auto dsn = load("137-gmail-dsn.eml");
  REQUIRE(dsn.bounce);
  CHECK(dsn.bounce->status == "5.1.1");
  auto exch = load("043-exchange-bounce-large.eml"); // per-recipient block base64-encoded
  REQUIRE(exch.bounce);
  CHECK(exch.bounce->failed_recipients == std::vector<std::string>{"netec.test@netecgc.com"});
  auto tnef = load("055-winmail-dat-tnef.eml");
  REQUIRE(tnef.attachments.size() == 1);
  CHECK(tnef.attachments[0].is_tnef);
  CHECK_FALSE(tnef.thread_index.empty());
  auto it = load("050-outlook-reply-chain-tnef.eml");
  CHECK(it.normalized_subject == "FR-selca LA selcaE");
  auto jp = load("119-iso2022jp-mailing-list-reply.eml"); // 8-bit EUC-JP labelled ISO-2022-JP
  CHECK(jp.body_text.find("心当たり") != std::string::npos);
  auto ko = load("036-ks-c-5601-charset.eml");
  CHECK(ko.body_text == "스티해\n");
  auto sjis = load("035-shift-jis-body.eml");
  CHECK(sjis.body_text.find("あいうえお") == 0);
  auto wrote = load("109-from-8bit-reply-wrote.eml");
  CHECK(wrote.reply_above.empty()); // the message is only a quote with a "wrote:" header
  auto flowed = load("049-format-flowed-delsp.eml");
  CHECK(flowed.body_text.find("\n") > 80); // soft breaks joined
  auto reply = load("002-rfc5322-reply-references.eml");
  CHECK(reply.in_reply_to == std::vector<std::string>{"<3456@example.net>"});
  CHECK(reply.references.size() == 2);
  CHECK(reply.date == std::optional<std::int64_t>(880131600)); // Fri, 21 Nov 1997 11:00:00 -0600
}
