#pragma once
// Test helpers: a canonical text form of parsed responses, and "grind" feeding (every split).
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "protocols/imap/response_parser.hpp"

namespace mscan::imap::test {

#ifdef MAILSCAN_SOURCE_DIR
inline std::string read_fixture(const std::string& name) {
  std::ifstream in(std::string(MAILSCAN_SOURCE_DIR) + "/tests/fixtures/imap/" + name,
                   std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
#endif

inline void describe_sexp(std::ostringstream& o, const sexp& s) {
  switch (s.type) {
    case sexp::kind::nil: o << "NIL"; break;
    case sexp::kind::atom: o << s.text; break;
    case sexp::kind::string: o << '"' << s.text << '"'; break;
    case sexp::kind::list:
      o << '(';
      for (std::size_t i = 0; i < s.items.size(); ++i) {
        if (i) o << ' ';
        describe_sexp(o, s.items[i]);
      }
      o << ')';
      break;
  }
}

inline std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// One line per response; every field that the parser fills appears.
inline std::string describe(const response& r) {
  std::ostringstream o;
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, status_response>) {
          static const char* names[] = {"OK", "NO", "BAD", "PREAUTH", "BYE"};
          o << "status tag=" << v.tag << " " << names[static_cast<int>(v.status)]
            << " code=" << static_cast<int>(v.code.kind) << ":" << v.code.name << ":"
            << v.code.arguments << ":" << v.code.number << ":" << join(v.code.list)
            << " text=" << v.text;
        } else if constexpr (std::is_same_v<T, continuation>) {
          o << "cont " << v.text;
        } else if constexpr (std::is_same_v<T, capability_data>) {
          o << "caps " << join(v.capabilities);
        } else if constexpr (std::is_same_v<T, list_data>) {
          o << (v.lsub ? "lsub " : "list ") << join(v.flags) << " delim="
            << (v.delimiter ? std::string(1, *v.delimiter) : "NIL") << " name=" << v.mailbox;
        } else if constexpr (std::is_same_v<T, status_data>) {
          o << "statusdata " << v.mailbox << " m=" << v.messages.value_or(0)
            << " n=" << v.uidnext.value_or(0) << " v=" << v.uidvalidity.value_or(0)
            << " u=" << v.unseen.value_or(0) << " h=" << v.highestmodseq.value_or(0);
        } else if constexpr (std::is_same_v<T, exists_data>) {
          o << "exists " << v.count;
        } else if constexpr (std::is_same_v<T, recent_data>) {
          o << "recent " << v.count;
        } else if constexpr (std::is_same_v<T, expunge_data>) {
          o << "expunge " << v.seq;
        } else if constexpr (std::is_same_v<T, vanished_data>) {
          o << "vanished " << v.earlier << " " << v.uids;
        } else if constexpr (std::is_same_v<T, flags_data>) {
          o << "flags " << join(v.flags);
        } else if constexpr (std::is_same_v<T, enabled_data>) {
          o << "enabled " << join(v.capabilities);
        } else if constexpr (std::is_same_v<T, search_data>) {
          o << "search";
          for (auto id : v.ids) o << ' ' << id;
          if (v.modseq) o << " modseq=" << *v.modseq;
        } else if constexpr (std::is_same_v<T, esearch_data>) {
          o << "esearch tag=" << v.tag << " uid=" << v.uid << " min=" << v.min.value_or(0)
            << " max=" << v.max.value_or(0) << " count=" << v.count.value_or(0)
            << " all=" << v.all;
        } else if constexpr (std::is_same_v<T, fetch_data>) {
          o << "fetch " << v.seq << " uid=" << v.uid.value_or(0);
          if (v.flags) o << " flags=" << join(*v.flags);
          if (v.internaldate) o << " date=" << *v.internaldate;
          if (v.rfc822_size) o << " size=" << *v.rfc822_size;
          if (v.modseq) o << " modseq=" << *v.modseq;
          if (v.gm_msgid) o << " msgid=" << *v.gm_msgid;
          if (v.gm_thrid) o << " thrid=" << *v.gm_thrid;
          if (v.gm_labels) o << " labels=" << join(*v.gm_labels);
          if (v.envelope) { o << " env="; describe_sexp(o, *v.envelope); }
          if (v.bodystructure) { o << " bs="; describe_sexp(o, *v.bodystructure); }
          for (const auto& s : v.sections) {
            o << (s.binary ? " BINARY[" : " BODY[") << s.section << "]";
            if (s.origin) o << "<" << *s.origin << ">";
            o << "=" << (s.data ? "{" + *s.data + "}" : std::string("NIL"));
          }
        } else if constexpr (std::is_same_v<T, other_data>) {
          o << "other " << v.keyword;
        } else if constexpr (std::is_same_v<T, id_data>) {
          o << "id";
          for (const auto& [k, val] : v.fields) o << ' ' << k << '=' << val;
        }
      },
      r);
  return o.str();
}

struct parse_outcome {
  std::vector<std::string> responses;  // describe() of each
  bool failed = false;
  std::string error;                   // message + excerpt
};

// Feeds `chunks` in order; collects every response.
inline parse_outcome parse_chunks(const std::vector<std::string_view>& chunks,
                                  parser_limits limits = {}) {
  response_parser p(limits);
  parse_outcome out;
  for (auto chunk : chunks) {
    while (!chunk.empty() && !out.failed) {
      const auto r = p.feed(chunk);
      chunk.remove_prefix(r.consumed);
      if (r.status == feed_status::ready) out.responses.push_back(describe(p.take()));
      if (r.status == feed_status::failed) {
        out.failed = true;
        out.error = p.error().message + " | " + p.error().excerpt;
      }
    }
  }
  return out;
}

inline parse_outcome parse_whole(std::string_view bytes, parser_limits limits = {}) {
  return parse_chunks({bytes}, limits);
}

inline parse_outcome parse_bytewise(std::string_view bytes, parser_limits limits = {}) {
  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < bytes.size(); ++i) chunks.push_back(bytes.substr(i, 1));
  return parse_chunks(chunks, limits);
}

inline bool same(const parse_outcome& a, const parse_outcome& b) {
  return a.responses == b.responses && a.failed == b.failed && a.error == b.error;
}

// Splits at every byte boundary (two chunks) and byte by byte; true if all agree with whole.
inline bool grind(std::string_view bytes, parser_limits limits = {}, std::string* why = nullptr) {
  const auto whole = parse_whole(bytes, limits);
  for (std::size_t k = 0; k <= bytes.size(); ++k) {
    if (!same(parse_chunks({bytes.substr(0, k), bytes.substr(k)}, limits), whole)) {
      if (why) *why = "split at " + std::to_string(k);
      return false;
    }
  }
  if (!same(parse_bytewise(bytes, limits), whole)) {
    if (why) *why = "byte by byte";
    return false;
  }
  return true;
}

} // namespace mscan::imap::test
