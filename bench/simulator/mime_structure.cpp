#include "bench/simulator/mime_structure.hpp"

namespace mscan::sim {

namespace {

std::string lower_copy(std::string_view s) {
  std::string o(s);
  for (auto& c : o)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return o;
}

std::string_view trim_ws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

void split_entity(std::string_view raw, std::string& header, std::string& body) {
  std::size_t pos = 0;
  while (pos < raw.size()) {
    const std::size_t eol = raw.find('\n', pos);
    if (eol == std::string_view::npos) {
      header = std::string(raw);
      body.clear();
      return;
    }
    std::string_view line = raw.substr(pos, eol - pos);
    if (line.empty() || line == "\r") {
      header = std::string(raw.substr(0, eol + 1));
      body = std::string(raw.substr(eol + 1));
      return;
    }
    pos = eol + 1;
  }
  header = std::string(raw);
  body.clear();
}

std::string parse_structured(std::string_view v,
                                    std::vector<std::pair<std::string, std::string>>& params) {
  std::size_t semi = v.find(';');
  std::string value = lower_copy(trim_ws(v.substr(0, semi)));
  while (semi != std::string_view::npos) {
    std::size_t i = semi + 1;
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == ';')) ++i;
    const std::size_t eq = v.find('=', i);
    if (eq == std::string_view::npos) break;
    std::string key(trim_ws(v.substr(i, eq - i)));
    std::size_t j = eq + 1;
    while (j < v.size() && (v[j] == ' ' || v[j] == '\t')) ++j;
    std::string val;
    if (j < v.size() && v[j] == '"') {
      ++j;
      while (j < v.size() && v[j] != '"') {
        if (v[j] == '\\' && j + 1 < v.size()) ++j;
        val += v[j++];
      }
      semi = v.find(';', j);
    } else {
      semi = v.find(';', j);
      val = std::string(trim_ws(v.substr(j, semi == std::string_view::npos ? std::string_view::npos : semi - j)));
    }
    if (!key.empty() && key.find(' ') == std::string::npos) params.emplace_back(std::move(key), std::move(val));
  }
  return value;
}

std::string imap_nstring(std::string_view s) { return s.empty() ? "NIL" : imap_string(s); }

std::string imap_params(const std::vector<std::pair<std::string, std::string>>& ps) {
  if (ps.empty()) return "NIL";
  std::string o = "(";
  for (const auto& [k, v] : ps) {
    if (o.size() > 1) o += ' ';
    o += imap_string(k) + " " + imap_string(v);
  }
  return o + ")";
}

std::size_t count_lines(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// One address list of a header value as ENVELOPE address structures, or NIL.
std::string envelope_addresses(std::string_view value) {
  std::vector<std::string_view> items;
  int depth = 0;
  bool quoted = false, angle = false;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= value.size(); ++i) {
    const char c = i < value.size() ? value[i] : ',';
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
      continue;
    }
    if (c == '"') quoted = true;
    else if (c == '(') ++depth;
    else if (c == ')' && depth > 0) --depth;
    else if (c == '<' && depth == 0) angle = true;
    else if (c == '>' && depth == 0) angle = false;
    else if ((c == ',' || c == ';' || (c == ':' && !angle)) && depth == 0 && !angle) {
      // ':' ends a group's display name (dropped), ';' its member list.
      if (c != ':') items.push_back(value.substr(start, i - start));
      start = i + 1;
    }
  }
  std::string out;
  for (auto one : items) {
    one = trim_ws(one);
    if (one.empty()) continue;
    std::string display;
    std::string_view addr = one;
    if (const auto lt = one.rfind('<'); lt != std::string_view::npos) {
      auto name = trim_ws(one.substr(0, lt));
      if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
      display = std::string(name);
      const auto gt = one.find('>', lt);
      addr = one.substr(lt + 1, gt == std::string_view::npos ? std::string_view::npos : gt - lt - 1);
    } else if (const auto comment = one.find('('); comment != std::string_view::npos) {
      addr = trim_ws(one.substr(0, comment));
    }
    const auto at = addr.rfind('@');
    const auto local = trim_ws(addr.substr(0, at));
    const auto host = at == std::string_view::npos ? std::string_view() : trim_ws(addr.substr(at + 1));
    out += "(" + imap_nstring(display) + " NIL " + imap_string(local) + " " + imap_string(host) + ")";
  }
  return out.empty() ? "NIL" : "(" + out + ")";
}

} // namespace

// Header block end: the first empty line (CRLF or LF); the header keeps it.

// Unfolded value of the first field `name` (case-insensitive).

std::string header_value(std::string_view header, std::string_view name) {
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t eol = header.find('\n', pos);
    if (eol == std::string_view::npos) eol = header.size();
    std::string_view line = header.substr(pos, eol - pos);
    const auto colon = line.find(':');
    if (colon != std::string_view::npos && lower_copy(trim_ws(line.substr(0, colon))) == lower_copy(name) &&
        line.front() != ' ' && line.front() != '\t') {
      std::string v(line.substr(colon + 1));
      std::size_t next = eol + 1;
      while (next < header.size() && (header[next] == ' ' || header[next] == '\t')) {
        std::size_t e = header.find('\n', next);
        if (e == std::string_view::npos) e = header.size();
        v += ' ';
        v += header.substr(next, e - next);
        next = e + 1;
      }
      std::string out;
      for (char c : v)
        if (c != '\r' && c != '\n') out += c;
      return std::string(trim_ws(out));
    }
    pos = eol + 1;
  }
  return {};
}

// "value; k=v; k2=\"q\"" -> value, params (as sent, quotes removed).

mime_entity parse_entity(std::string_view raw, bool digest_child, int depth) {
  mime_entity e;
  split_entity(raw, e.header, e.body);
  std::string ct = header_value(e.header, "content-type");
  std::string t = parse_structured(ct, e.params);
  if (t.empty() || t.find('/') == std::string::npos) {
    if (digest_child && t.empty()) t = "message/rfc822";
    else t = "text/plain";
  }
  e.type = t.substr(0, t.find('/'));
  e.subtype = t.substr(t.find('/') + 1);
  std::vector<std::pair<std::string, std::string>> dp;
  e.disposition = parse_structured(header_value(e.header, "content-disposition"), e.dparams);
  e.id = header_value(e.header, "content-id");
  e.description = header_value(e.header, "content-description");
  e.encoding = lower_copy(header_value(e.header, "content-transfer-encoding"));
  if (depth > 20) return e;
  if (e.type == "multipart") {
    std::string boundary;
    for (auto& [k, v] : e.params)
      if (lower_copy(k) == "boundary") boundary = v;
    if (boundary.empty()) {
      e.type = "text";
      e.subtype = "plain";
      return e;
    }
    const std::string delim = "--" + boundary;
    std::string_view b = e.body;
    // delimiter lines at line starts
    std::vector<std::pair<std::size_t, std::size_t>> hits;  // line start, next line
    std::vector<bool> close;
    std::size_t from = 0;
    while (true) {
      std::size_t at = b.find(delim, from);
      if (at == std::string_view::npos) break;
      from = at + 1;
      if (at != 0 && b[at - 1] != '\n') continue;
      std::size_t k = at + delim.size();
      const bool c = b.substr(k, 2) == "--";
      if (c) k += 2;
      std::size_t x = k;
      while (x < b.size() && (b[x] == ' ' || b[x] == '\t' || b[x] == '\r')) ++x;
      if (x < b.size() && b[x] != '\n') continue;
      hits.emplace_back(at, x < b.size() ? x + 1 : b.size());
      close.push_back(c);
      if (c) break;
    }
    for (std::size_t i = 0; i < hits.size(); ++i) {
      if (close[i]) break;
      std::size_t start = hits[i].second;
      std::size_t end = i + 1 < hits.size() ? hits[i + 1].first : b.size();
      if (end > start && b[end - 1] == '\n' && i + 1 < hits.size()) --end;
      if (end > start && b[end - 1] == '\r' && i + 1 < hits.size()) --end;
      if (end < start) end = start;
      e.children.push_back(parse_entity(b.substr(start, end - start), e.subtype == "digest", depth + 1));
    }
    if (e.children.empty()) {  // a multipart needs a part: the body as text
      mime_entity c;
      c.body = e.body;
      e.children.push_back(std::move(c));
    }
  } else if (e.type == "message" && (e.subtype == "rfc822" || e.subtype == "global")) {
    e.inner = std::make_unique<mime_entity>(parse_entity(e.body, false, depth + 1));
  }
  return e;
}

std::string imap_string(std::string_view s) {
  bool plain = true;
  for (char c : s)
    if (c == '\r' || c == '\n' || c == '\0' || static_cast<unsigned char>(c) >= 0x80) plain = false;
  if (!plain) return "{" + std::to_string(s.size()) + "}\r\n" + std::string(s);
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o + '"';
}

std::string body_structure(const mime_entity& e) {
  std::string dsp = e.disposition.empty()
                        ? std::string("NIL")
                        : "(" + imap_string(e.disposition) + " " + imap_params(e.dparams) + ")";
  if (e.type == "multipart") {
    std::string o = "(";
    for (const auto& c : e.children) o += body_structure(c);
    return o + " " + imap_string(e.subtype) + " " + imap_params(e.params) + " " + dsp + " NIL NIL)";
  }
  std::string o = "(" + imap_string(e.type) + " " + imap_string(e.subtype) + " " + imap_params(e.params) +
                  " " + imap_nstring(e.id) + " " + imap_nstring(e.description) + " " +
                  imap_string(e.encoding.empty() ? "7bit" : e.encoding) + " " + std::to_string(e.body.size());
  if (e.type == "text") o += " " + std::to_string(count_lines(e.body));
  if (e.inner)
    o += " " + envelope_of(e.inner->header) + " " + body_structure(*e.inner) + " " +
         std::to_string(count_lines(e.body));
  return o + " NIL " + dsp + " NIL NIL)";
}

// BODY[section] of a message (RFC 3501 6.4.5). Unknown sections give "".

std::string section_of(const mime_entity& root, std::string_view spec) {
  if (spec.empty()) return root.header + root.body;  // the message it was parsed from
  if (spec == "HEADER") return root.header;
  if (spec == "TEXT") return root.body;
  // A numbered part: the root is a message; part k of a message is child k of its
  // multipart body, or (k = 1) the body itself.
  const mime_entity* msg = &root;      // the message the next number indexes into
  const mime_entity* part = nullptr;
  while (!spec.empty()) {
    std::size_t dot = spec.find('.');
    std::string_view tok = spec.substr(0, dot);
    spec = dot == std::string_view::npos ? std::string_view{} : spec.substr(dot + 1);
    if (!tok.empty() && tok[0] >= '0' && tok[0] <= '9') {
      const std::size_t k = std::stoul(std::string(tok));
      const mime_entity* container = part ? part : msg;
      if (part && part->inner) container = part->inner.get();
      if (container->type == "multipart") {
        if (k == 0 || k > container->children.size()) return {};
        part = &container->children[k - 1];
      } else {
        if (k != 1) return {};
        part = container;
      }
      continue;
    }
    if (!part) return {};
    if (tok == "MIME") return part->header;
    if (tok == "HEADER") return part->inner ? part->inner->header : std::string{};
    if (tok == "TEXT") return part->inner ? part->inner->body : std::string{};
    return {};
  }
  if (!part) return {};
  // The root's single part is its body; so is a numbered leaf.
  return part->body;
}

std::string envelope_of(std::string_view header) {
  auto field = [&](std::string_view name) { return header_value(header, name); };
  const auto from = envelope_addresses(field("from"));
  auto or_from = [&](std::string_view name) {
    auto v = envelope_addresses(field(name));
    return v == "NIL" ? from : v;
  };
  return "(" + imap_nstring(field("date")) + " " + imap_nstring(field("subject")) + " " + from + " " +
         or_from("sender") + " " + or_from("reply-to") + " " + envelope_addresses(field("to")) + " " +
         envelope_addresses(field("cc")) + " " + envelope_addresses(field("bcc")) + " " +
         imap_nstring(field("in-reply-to")) + " " + imap_nstring(field("message-id")) + ")";
}

} // namespace mscan::sim
