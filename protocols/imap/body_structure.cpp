#include "protocols/imap/body_structure.hpp"

#include <fmt/format.h>

namespace mscan::imap {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_str(const sexp& s) { return s.type == sexp::kind::atom || s.type == sexp::kind::string; }
// The tree is consumed: strings are moved out, not copied.
std::string str_of(sexp& s) { return is_str(s) ? std::move(s.text) : std::string{}; }

mime_params params_of(sexp& s) {
  mime_params out;
  if (s.type != sexp::kind::list) return out;
  out.reserve(s.items.size() / 2);
  for (std::size_t i = 0; i + 1 < s.items.size(); i += 2)
    if (is_str(s.items[i])) out.emplace_back(std::move(s.items[i].text), str_of(s.items[i + 1]));
  return out;
}

void disposition_of(sexp& s, body_part& p) {
  if (s.type != sexp::kind::list || s.items.empty() || !is_str(s.items[0])) return;
  p.disposition = lower(s.items[0].text);
  if (s.items.size() > 1) p.disposition_params = params_of(s.items[1]);
}

std::string child_section(const std::string& parent, std::size_t index) {
  return parent.empty() ? std::to_string(index + 1) : fmt::format("{}.{}", parent, index + 1);
}

bool parse_part(sexp& t, const std::string& section, std::size_t depth,
                const body_structure_limits& lim, std::size_t& parts, body_part& p) {
  if (t.type != sexp::kind::list || t.items.empty() || depth >= lim.max_depth ||
      ++parts > lim.max_parts)
    return false;
  p.section = section;
  auto& it = t.items;
  if (it[0].type == sexp::kind::list) {
    p.type = "multipart";
    std::size_t k = 0;
    for (; k < it.size() && it[k].type == sexp::kind::list; ++k) {
      body_part c;
      if (!parse_part(it[k], child_section(section, k), depth + 1, lim, parts, c)) return false;
      p.children.push_back(std::move(c));
    }
    if (k >= it.size() || !is_str(it[k])) return false;
    p.subtype = lower(it[k].text);
    if (k + 1 < it.size()) p.params = params_of(it[k + 1]);
    if (k + 2 < it.size()) disposition_of(it[k + 2], p);
    return true;
  }
  if (it.size() < 7 || !is_str(it[0]) || !is_str(it[1])) return false;
  p.type = lower(it[0].text);
  p.subtype = lower(it[1].text);
  p.params = params_of(it[2]);
  p.id = str_of(it[3]);
  p.description = str_of(it[4]);
  p.encoding = lower(str_of(it[5]));
  std::uint64_t size = 0;
  for (char c : str_of(it[6])) {
    if (c < '0' || c > '9' || size > (1ull << 50)) return false;
    size = size * 10 + static_cast<std::uint64_t>(c - '0');
  }
  p.size = size;
  std::size_t ext = 7;
  if (p.type == "text") {
    ext = 8;  // lines
  } else if (p.message() && it.size() >= 10 && it[8].type == sexp::kind::list) {
    body_part inner;
    // The encapsulated message's parts are numbered below the message part; a non-multipart
    // body is its part 1 (RFC 3501 6.4.5).
    const bool inner_multipart = !it[8].items.empty() && it[8].items[0].type == sexp::kind::list;
    if (!parse_part(it[8], inner_multipart ? section : section + ".1", depth + 1, lim, parts, inner))
      return false;
    p.children.push_back(std::move(inner));
    ext = 10;  // envelope, body, lines
  }
  if (ext + 1 < it.size()) disposition_of(it[ext + 1], p);  // after md5
  return true;
}

bool identity_encoding(std::string_view e) {
  return e.empty() || e == "7bit" || e == "8bit" || e == "binary";
}

bool name_key(std::string_view key, std::string_view base) {
  const std::string k = lower(key);
  return k.rfind(base, 0) == 0 && (k.size() == base.size() || k[base.size()] == '*');
}

// Where a part's MIME header comes from, decided by what encloses it.
enum class context { root, multipart, message };

enum class role { plain, html, calendar, dsn, other_text, message, attachment };

role role_of(const body_part& p) {
  const bool named = !p.file_name().empty();
  const bool attached = p.disposition == "attachment";
  if (p.message() && !p.children.empty() && identity_encoding(p.encoding)) return role::message;
  if (p.type == "message" &&
      (p.subtype == "delivery-status" || p.subtype == "global-delivery-status"))
    return role::dsn;
  if ((p.type == "text" && p.subtype == "calendar") ||
      (p.type == "application" && p.subtype == "ics"))
    return role::calendar;
  if (p.type == "text" && !attached && !named) {
    if (p.subtype == "plain") return role::plain;
    if (p.subtype == "html") return role::html;
    return role::other_text;
  }
  return role::attachment;
}

struct leaf {
  const body_part* part;
  context ctx;
  int level;  // 0 = the message itself, 1 = inside an attached message
  role r;
};

void collect(const body_part& p, context ctx, int level, std::vector<leaf>& out) {
  if (p.multipart()) {
    for (const auto& c : p.children) collect(c, context::multipart, level, out);
    return;
  }
  role r = role_of(p);
  // A message/rfc822 as the whole message has no section spec for its inner header that
  // all servers agree on: keep it as an attachment.
  if (r == role::message && ctx == context::root) r = role::attachment;
  out.push_back({&p, ctx, level, r});
  if (r == role::message) collect(p.children.front(), context::message, 1, out);
}

std::string body_spec(const leaf& l) {
  switch (l.ctx) {
    case context::root: return "TEXT";
    case context::message: break;  // "S.1": the body of the message at S
    case context::multipart: break;
  }
  return l.part->section;
}

// The media type and boundary a header block's first Content-Type field announces, read the
// way a lenient MIME parser reads it (servers do not always agree: an unquoted boundary with
// '=' in it, a missing ';'). The synthetic message must use the header's boundary.
struct header_type { std::string type, boundary; };

header_type content_type_of(std::string_view h) {
  header_type out;
  std::size_t pos = 0;
  std::string value;
  while (pos < h.size()) {
    std::size_t eol = h.find('\n', pos);
    if (eol == std::string_view::npos) eol = h.size();
    const std::string_view line = h.substr(pos, eol - pos);
    if (line.empty() || line == "\r") break;  // end of the header block
    if (line.size() > 13 && iequals(line.substr(0, 13), "content-type:")) {
      value = std::string(line.substr(13));
      std::size_t next = eol + 1;
      while (next < h.size() && (h[next] == ' ' || h[next] == '\t')) {
        std::size_t e = h.find('\n', next);
        if (e == std::string_view::npos) e = h.size();
        value += ' ';
        value += h.substr(next, e - next);
        next = e + 1;
      }
      break;
    }
    pos = eol + 1;
  }
  if (value.empty()) return out;
  std::size_t i = 0;
  while (i < value.size() && (value[i] == ' ' || value[i] == '\t')) ++i;
  while (i < value.size() && value[i] != ';' && value[i] != ' ' && value[i] != '\t' && value[i] != '\r')
    out.type += value[i++];
  out.type = lower(out.type);
  const std::string low = lower(std::string_view(value).substr(i));
  for (std::size_t at = low.find("boundary"); at != std::string::npos; at = low.find("boundary", at + 1)) {
    std::size_t k = i + at + 8;
    while (k < value.size() && (value[k] == ' ' || value[k] == '\t')) ++k;
    if (k >= value.size() || value[k] != '=') continue;
    ++k;
    while (k < value.size() && (value[k] == ' ' || value[k] == '\t')) ++k;
    std::string b;
    if (k < value.size() && value[k] == '"') {
      for (++k; k < value.size() && value[k] != '"'; ++k) {
        if (value[k] == '\\' && k + 1 < value.size()) ++k;
        b += value[k];
      }
    } else {
      while (k < value.size() && value[k] != ';' && value[k] != ' ' && value[k] != '\t' && value[k] != '\r')
        b += value[k++];
    }
    out.boundary = std::move(b);
    break;
  }
  return out;
}

bool boundaries_ok(const body_part& p) {
  if (p.multipart()) {
    const auto* b = p.param("boundary");
    if (!b || b->empty() || b->size() > 200) return false;
  }
  for (const auto& c : p.children)
    if (!boundaries_ok(c)) return false;
  return true;
}

bool token_char(char c) {
  if (static_cast<unsigned char>(c) <= 32 || static_cast<unsigned char>(c) >= 127) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

void append_params(std::string& out, const mime_params& ps) {
  for (const auto& [k, v] : ps) {
    std::string key;
    for (char c : k)
      if (token_char(c) || c == '*') key.push_back(c);
    if (key.empty()) continue;
    out += "; ";
    out += key;
    out += '=';
    bool token = !v.empty();
    for (char c : v) token = token && (token_char(c) || c == '%' || c == '\'');
    if (token) {
      out += v;
      continue;
    }
    out += '"';
    for (char c : v) {
      if (c == '\r' || c == '\n') continue;  // a header never breaks inside a value
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
}

void append_value(std::string& out, std::string_view v) {
  for (char c : v)
    if (c != '\r' && c != '\n') out += c;
}

std::string stub_header(const body_part& p, std::string_view boundary = {}) {
  std::string h = "Content-Type: ";
  append_value(h, p.type);
  h += '/';
  append_value(h, p.subtype);
  if (p.multipart()) {
    mime_params ps;
    for (const auto& kv : p.params)
      if (!iequals(kv.first, "boundary")) ps.push_back(kv);
    ps.emplace_back("boundary", std::string(boundary));
    append_params(h, ps);
  } else {
    append_params(h, p.params);
  }
  h += "\r\n";
  if (!p.disposition.empty()) {
    h += "Content-Disposition: ";
    append_value(h, p.disposition);
    append_params(h, p.disposition_params);
    h += "\r\n";
  }
  if (!p.id.empty()) {
    h += "Content-ID: ";
    append_value(h, p.id);
    h += "\r\n";
  }
  if (!p.encoding.empty()) {
    h += "Content-Transfer-Encoding: ";
    append_value(h, p.encoding);
    h += "\r\n";
  }
  h += "\r\n";
  return h;
}

// The boundary a multipart is written with when no header of the server's names one (the
// plan checks that the server gave one; a server that then does not send what the plan asked
// for must still not crash the assembly).
std::string boundary_of(const body_part& p) {
  if (const auto* b = p.param("boundary"); b && !b->empty()) return *b;
  return "=_mscan_" + p.section;
}

// A header block as the server sent it, ending in its blank line whatever the server did.
void append_header(std::string& out, std::string_view h) {
  out += h;
  if (h == "\n" || h == "\r\n") {
    // a part without header fields: the blank line alone
  } else if (h.empty()) {
    out += "\r\n";
  } else if (h.size() >= 2 && h.substr(h.size() - 2) == "\n\n") {
  } else if (h.size() >= 4 && h.substr(h.size() - 4) == "\r\n\r\n") {
  } else if (h.back() == '\n') {
    out += "\r\n";
  } else {
    out += "\r\n\r\n";
  }
}

struct assembler {
  const std::map<std::string, std::string, std::less<>>& sections;
  std::size_t cap;
  bool truncated = false;
  std::string out;

  const std::string* find(const std::string& spec) const {
    const auto it = sections.find(spec);
    return it == sections.end() ? nullptr : &it->second;
  }

  void leaf_body(const body_part& p, context ctx) {
    const role r = role_of(p);
    std::string spec = ctx == context::root ? std::string("TEXT") : p.section;
    if (const auto* data = find(spec)) {
      out += *data;
      if (cap > 0 && p.size > cap) truncated = true;
      return;
    }
    // Not fetched: an empty body, except that a non-empty attachment keeps one placeholder
    // byte so that the parser lists it even when it has no name (inline images).
    if (p.size > 0 && r != role::plain && r != role::html && r != role::other_text) out += ' ';
  }

  // `real_header`: the header block this entity's Content-Type came from, when it is the
  // server's (the message's, or an attached message's); its boundary wins.
  void body(const body_part& p, context ctx, std::string_view real_header = {}) {
    if (p.multipart()) {
      std::string b = content_type_of(real_header).boundary;
      if (b.empty()) b = boundary_of(p);
      for (const auto& c : p.children) {
        out += "--";
        out += b;
        out += "\r\n";
        part(c);
        out += "\r\n";
      }
      out += "--";
      out += b;
      out += "--\r\n";
      return;
    }
    if (role_of(p) == role::message && ctx != context::root) {
      const body_part& inner = p.children.front();
      if (const auto* h = find(p.section + ".HEADER")) {
        append_header(out, *h);
        body(inner, context::message, *h);
      } else {
        out += stub_header(inner, inner.multipart() ? boundary_of(inner) : "");
        body(inner, context::message);
      }
      return;
    }
    leaf_body(p, ctx);
  }

  // A part inside a multipart: its MIME header, then its body.
  void part(const body_part& p) {
    if (!p.multipart())
      if (const auto* h = find(p.section + ".MIME")) {
        append_header(out, *h);
        body(p, context::multipart);
        return;
      }
    out += stub_header(p, p.multipart() ? boundary_of(p) : "");
    body(p, context::multipart);
  }
};

} // namespace

bool body_part::message() const {
  return type == "message" && (subtype == "rfc822" || subtype == "global");
}

const std::string* body_part::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (iequals(k, name)) return &v;
  return nullptr;
}

std::string body_part::file_name() const {
  for (const auto& [k, v] : disposition_params)
    if (name_key(k, "filename") && !v.empty()) return v;
  for (const auto& [k, v] : params)
    if (name_key(k, "name") && !v.empty()) return v;
  return {};
}

std::optional<body_part> parse_body_structure(const sexp& tree, const body_structure_limits& lim) {
  return parse_body_structure(sexp(tree), lim);
}

std::optional<body_part> parse_body_structure(sexp&& tree, const body_structure_limits& lim) {
  body_part root;
  std::size_t parts = 0;
  if (!parse_part(tree, "", 0, lim, parts, root)) return std::nullopt;
  return root;
}

std::string fetch_plan::items(std::size_t cap) const {
  std::string out;
  for (const auto& s : sections) {
    if (!out.empty()) out += ' ';
    out += "BODY.PEEK[";
    out += s;
    out += ']';
    for (const auto& c : capped)
      if (c == s && cap > 0) {
        out += fmt::format("<0.{}>", cap);
        break;
      }
  }
  return out;
}

fetch_plan plan_fetch(const body_part& root, std::string_view header, bool text) {
  fetch_plan plan;
  // The header must announce the tree the server describes, or the parser would read
  // the synthetic body differently.
  const header_type ht = content_type_of(header);
  const bool header_multipart = ht.type.rfind("multipart/", 0) == 0 && !ht.boundary.empty();
  // A message/rfc822 as the whole message: no section spec for its inner header that all
  // servers agree on, so it comes whole (capped), as a forwarded message is mostly text.
  bool consistent = header_multipart == root.multipart() && !root.message();
  // A single part whose declared type the server read differently (e.g. "text plain").
  if (consistent && !root.multipart() && !ht.type.empty() &&
      ht.type != root.type + "/" + root.subtype && !(ht.type == "text" && root.type == "text"))
    consistent = false;
  if (consistent && root.multipart() && !root.param("boundary")) {
    // the header's boundary will do for the root; the rest still needs the server's
    for (const auto& c : root.children) consistent = consistent && boundaries_ok(c);
  } else if (consistent) {
    consistent = boundaries_ok(root);
  }
  if (!consistent) {
    // No way to rebuild the tree the header announces: the whole message, capped.
    plan.sections = {""};
    plan.capped = {""};
    return plan;
  }
  std::vector<leaf> leaves;
  collect(root, context::root, 0, leaves);
  std::vector<const leaf*> chosen;
  // Mirror of the parser's choice (see the header comment); 8 bytes of encoded text is
  // the margin under which a plain part may still decode to nothing.
  constexpr std::uint64_t nearly_empty = 8;
  std::uint64_t text_bytes = 0;
  for (int level = 0; text && level < 2 && text_bytes < nearly_empty; ++level) {
    for (const auto& l : leaves)
      if (l.level == level && l.r == role::plain) {
        chosen.push_back(&l);
        text_bytes += l.part->size;
      }
    if (text_bytes >= nearly_empty) break;
    for (const auto& l : leaves)
      if (l.level == level && l.r == role::html) {
        chosen.push_back(&l);
        text_bytes += l.part->size;
        break;
      }
  }
  for (const auto& l : leaves)
    if (text && (l.r == role::calendar || l.r == role::dsn)) chosen.push_back(&l);
  for (const auto& l : leaves) {
    if (text && l.r == role::message) plan.sections.push_back(l.part->section + ".HEADER");
    bool fetched = false;
    for (const auto* c : chosen) fetched = fetched || c == &l;
    if (fetched) {
      if (l.ctx == context::multipart) plan.sections.push_back(l.part->section + ".MIME");
      plan.sections.push_back(body_spec(l));
      plan.capped.push_back(body_spec(l));
      continue;
    }
    if (l.r != role::attachment && l.r != role::message && (text || (l.r != role::calendar && l.r != role::dsn)))
      continue;
    if (l.r == role::attachment && l.part->size == 0 && l.part->file_name().empty() &&
        l.part->disposition != "attachment")
      continue;  // the parser ignores empty unnamed parts
    attachment_stub a;
    a.name = l.part->file_name();
    a.type = l.part->type + "/" + l.part->subtype;
    a.content_id = l.part->id;
    a.disposition = l.part->disposition;
    a.encoding = l.part->encoding;
    a.size = l.part->size;
    a.decoded_size = a.size;
    if (a.encoding == "base64") {
      // 76 characters and CRLF per line; the last line break belongs to the boundary.
      const std::uint64_t line_breaks = (a.size + 2 + 77) / 78 - 1;
      const std::uint64_t chars = a.size > 2 * line_breaks ? a.size - 2 * line_breaks : 0;
      a.decoded_size = chars / 4 * 3;
    }
    a.section = l.part->section.empty() ? "1" : l.part->section;
    plan.attachments.push_back(std::move(a));
  }
  return plan;
}

std::string assemble_message(const body_part& root, std::string_view header,
                             const std::map<std::string, std::string, std::less<>>& sections,
                             std::size_t cap, bool& truncated) {
  if (const auto it = sections.find(""); it != sections.end()) {
    truncated = cap > 0 && it->second.size() >= cap;
    return it->second;
  }
  assembler a{sections, cap, false, {}};
  std::size_t expect = header.size() + 1024;
  for (const auto& kv : sections) expect += kv.second.size() + 256;
  a.out.reserve(expect);
  append_header(a.out, header);
  a.body(root, context::root, header);
  truncated = a.truncated;
  return std::move(a.out);
}

} // namespace mscan::imap
