#pragma once
// Test code: the server side of a transcript, built from raw messages (MIME structure and
// sections from bench/simulator/mime_structure.hpp, as the simulator serves .eml files): a
// responder that answers the commands scan_session writes. It counts the bytes of its FETCH
// responses.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench/simulator/mime_structure.hpp"

namespace mscan::imap::test {

using sim::body_structure;
using sim::mime_entity;
using sim::parse_entity;
using sim::section_of;

// Answers scan_session's commands for one folder holding `messages` (UID = index + 1).
struct mime_server {
  std::vector<std::string> messages;
  std::vector<mime_entity> parsed;
  std::string capabilities = "IMAP4rev1 LITERAL+";
  std::string store_answer = "OK Store completed.";
  std::size_t fetch_bytes = 0;          // bytes of FETCH responses (untagged)
  std::vector<std::string> commands;    // every command line received
  std::vector<std::string> internal_dates;  // by UID - 1; default 17-Jul-1996 02:44:25 -0700

  explicit mime_server(std::vector<std::string> msgs) : messages(std::move(msgs)) {
    for (const auto& m : messages) parsed.push_back(parse_entity(m));
  }
  std::string greeting() const { return "* PREAUTH [CAPABILITY " + capabilities + "] ready\r\n"; }

  std::vector<std::uint32_t> uid_set(std::string_view set) const {
    std::vector<std::uint32_t> out;
    while (!set.empty()) {
      std::size_t comma = set.find(',');
      std::string_view r = set.substr(0, comma);
      set = comma == std::string_view::npos ? std::string_view{} : set.substr(comma + 1);
      const std::size_t colon = r.find(':');
      const std::uint32_t a = static_cast<std::uint32_t>(std::stoul(std::string(r.substr(0, colon))));
      const std::uint32_t b = colon == std::string_view::npos
                                  ? a
                                  : (r.substr(colon + 1) == "*" ? static_cast<std::uint32_t>(messages.size())
                                                                : static_cast<std::uint32_t>(std::stoul(std::string(r.substr(colon + 1)))));
      for (std::uint32_t u = a; u <= b; ++u)
        if (u >= 1 && u <= messages.size()) out.push_back(u);
    }
    return out;
  }

  std::string fetch(std::uint32_t uid, std::string_view items) {
    const std::string& raw = messages[uid - 1];
    const mime_entity& root = parsed[uid - 1];
    std::string o = "* " + std::to_string(uid) + " FETCH (UID " + std::to_string(uid);
    if (items.front() == '(') items = items.substr(1, items.size() - 2);
    while (!items.empty()) {
      std::size_t end = items.find(' ');
      const std::size_t br = items.find('[');
      if (br != std::string_view::npos && br < end) end = items.find(' ', items.find(']', br));
      std::string_view item = items.substr(0, end);
      items = end == std::string_view::npos ? std::string_view{} : items.substr(end + 1);
      if (item == "UID") continue;
      if (item == "FLAGS") o += " FLAGS ()";
      else if (item == "INTERNALDATE") o += " INTERNALDATE \"" + internal_date(uid) + "\"";
      else if (item == "RFC822.SIZE") o += " RFC822.SIZE " + std::to_string(raw.size());
      else if (item == "BODYSTRUCTURE") o += " BODYSTRUCTURE " + body_structure(root);
      else if (item == "X-GM-MSGID") o += " X-GM-MSGID " + std::to_string(1000000000000ull + uid);
      else if (item == "EMAILID") o += " EMAILID (M" + std::to_string(uid) + "abc)";
      else if (item == "MODSEQ") o += " MODSEQ (" + std::to_string(100 + uid) + ")";
      else if (item.rfind("BODY.PEEK[", 0) == 0) {
        const std::size_t close = item.find(']');
        const std::string spec(item.substr(10, close - 10));
        std::string data = section_of(root, spec);
        std::string_view partial = item.substr(close + 1);
        std::string name = "BODY[" + spec + "]";
        if (!partial.empty()) {
          const std::size_t dot = partial.find('.');
          const std::size_t n = std::stoul(std::string(partial.substr(dot + 1, partial.size() - dot - 2)));
          if (data.size() > n) data.resize(n);
          name += "<0>";
        }
        o += " " + name + " {" + std::to_string(data.size()) + "}\r\n" + data;
      }
    }
    o += ")\r\n";
    fetch_bytes += o.size();
    return o;
  }

  std::string internal_date(std::uint32_t uid) const {
    return uid <= internal_dates.size() ? internal_dates[uid - 1] : "17-Jul-1996 02:44:25 -0700";
  }

  // The answer to everything the client wrote.
  std::string answer(std::string_view client) {
    std::string out;
    while (!client.empty()) {
      const std::size_t eol = client.find("\r\n");
      std::string_view line = client.substr(0, eol);
      client = eol == std::string_view::npos ? std::string_view{} : client.substr(eol + 2);
      commands.emplace_back(line);
      const std::size_t sp = line.find(' ');
      const std::string tag(line.substr(0, sp));
      std::string_view rest = line.substr(sp + 1);
      if (rest.rfind("EXAMINE", 0) == 0 || rest.rfind("SELECT", 0) == 0) {
        out += "* " + std::to_string(messages.size()) + " EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n"
               "* OK [UIDNEXT " + std::to_string(messages.size() + 1) + "] x\r\n"
               "* OK [MAILBOXID (F42-box)] x\r\n" + tag + " OK done\r\n";
      } else if (rest.rfind("UID SEARCH", 0) == 0) {
        out += "* SEARCH";
        for (std::size_t u = 1; u <= messages.size(); ++u) out += " " + std::to_string(u);
        out += "\r\n" + tag + " OK done\r\n";
      } else if (rest.rfind("UID FETCH ", 0) == 0) {
        rest.remove_prefix(10);
        const std::size_t s2 = rest.find(' ');
        for (auto u : uid_set(rest.substr(0, s2))) out += fetch(u, rest.substr(s2 + 1));
        out += tag + " OK Fetch completed.\r\n";
      } else if (rest == "FETCH 1 (INTERNALDATE)" && !messages.empty()) {
        out += "* 1 FETCH (INTERNALDATE \"" + internal_date(1) + "\")\r\n" + tag + " OK done\r\n";
      } else if (rest.rfind("UID STORE", 0) == 0) {
        out += tag + " " + store_answer + "\r\n";
      } else if (rest.rfind("LOGOUT", 0) == 0) {
        out += "* BYE bye\r\n" + tag + " OK done\r\n";
      } else {
        out += tag + " BAD what\r\n";
      }
    }
    return out;
  }
};

} // namespace mscan::imap::test
