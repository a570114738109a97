// parse_message: header fields of the top-level message, then one walk over the MIME tree.
//
// The walk never decodes a body it does not need: text candidates are remembered as views
// and only the chosen body is transfer-decoded and converted; attachments are measured, not
// decoded. Nesting is bounded by max_depth, part count by max_parts, header count by
// max_headers, so time is linear in the input (times max_depth for nested multipart scans).
#include "protocols/mime/addresses.hpp"
#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

#include <cstdint>
#include <cstring>
#include <deque>

namespace mscan::mime {
using namespace detail;

namespace {

constexpr std::size_t max_warnings = 64;

enum class transfer { identity, base64, quoted_printable };

struct text_candidate {
  std::string_view body; // still transfer-encoded
  transfer cte = transfer::identity;
  std::string charset;
  bool html = false;
  bool flowed = false, delsp = false;
  bool found = false;
  std::size_t parent = 0; // id of the enclosing multipart
  // Further inline text parts of the same multipart/mixed (Apple Mail splits the text
  // around inline images); appended to the body in order.
  std::vector<text_candidate> more;
};

struct dsn_group {
  std::string final_rcpt, original_rcpt, action, status;
};

struct walker {
  walker(const parse_options& o, message& m) : opts(o), msg(m) {}
  const parse_options& opts;
  message& msg;
  std::string fallback_charset;
  std::size_t parts = 0;
  bool parts_capped = false;
  // [0] = this message's own text, [1] = text inside attached messages (fallback only)
  text_candidate plain[2], html[2];
  std::size_t multipart_id = 0, next_multipart_id = 1;
  bool in_alternative = false;
  std::deque<std::string> buffers; // decoded message/rfc822 bodies the views point into

  void warn(std::string w) {
    if (msg.warnings.size() < max_warnings) msg.warnings.push_back(std::move(w));
  }

  void walk(std::string_view entity, std::size_t depth, bool attached, bool digest_child,
            const header_block* presplit = nullptr);
  void walk_multipart(std::string_view body, std::string_view boundary, std::size_t depth,
                      bool attached, bool digest);
  void parse_delivery_status(std::string_view body);
  void parse_calendar(std::string_view text);
};

transfer transfer_of(const header_field* f, walker& w) {
  if (!f) return transfer::identity;
  std::string scratch;
  std::string_view v = unfold(f->value, scratch);
  std::string k;
  for (char c : v) {
    if (c == ';') break;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) k.push_back(ascii_lower(c));
  }
  if (k == "base64") return transfer::base64;
  if (k == "quotedprintable" || k == "qp") return transfer::quoted_printable;
  if (k.empty() || k == "7bit" || k == "8bit" || k == "binary" || k == "none") return transfer::identity;
  w.warn("unknown Content-Transfer-Encoding '" + std::string(v.substr(0, 40)) + "', kept as is");
  return transfer::identity;
}

std::string transfer_decode(std::string_view body, transfer t) {
  std::string out;
  switch (t) {
    case transfer::base64: decode_base64(body, out); break;
    case transfer::quoted_printable: decode_quoted_printable(body, out); break;
    case transfer::identity: out.assign(body); break;
  }
  return out;
}

// Text as LF-only lines. Moves whole runs between CRs (memchr/memmove): a byte loop here cost
// ~3 µs per 13 KB body, a tenth of the engine's CPU per message.
void strip_cr(std::string& s) {
  char* const base = s.data();
  const std::size_t n = s.size();
  auto* cr = static_cast<char*>(std::memchr(base, '\r', n));
  if (!cr) return;
  std::size_t o = static_cast<std::size_t>(cr - base);
  std::size_t i = o;
  while (i < n) {
    // base[i] is a CR: dropped before LF, else it becomes LF.
    if (i + 1 >= n || base[i + 1] != '\n') base[o++] = '\n';
    ++i;
    auto* next = static_cast<char*>(std::memchr(base + i, '\r', n - i));
    std::size_t run_end = next ? static_cast<std::size_t>(next - base) : n;
    std::memmove(base + o, base + i, run_end - i);
    o += run_end - i;
    i = run_end;
  }
  s.resize(o);
}

bool has_8bit(std::string_view s) {
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    if (w & 0x8080808080808080ULL) return true;
  }
  for (; i < s.size(); ++i)
    if (static_cast<unsigned char>(s[i]) >= 0x80) return true;
  return false;
}

// RFC 3676 format=flowed: joins soft-broken lines, removes space-stuffing.
std::string unflow(std::string_view text, bool delsp) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  bool joining = false;
  std::size_t join_depth = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    std::size_t depth = 0;
    while (depth < line.size() && line[depth] == '>') ++depth;
    std::string_view content = line.substr(depth);
    if (!content.empty() && content.front() == ' ') content.remove_prefix(1); // stuffing
    bool soft = !content.empty() && content.back() == ' ' && content != "-- ";
    if (!(joining && depth == join_depth)) {
      if (joining) out.push_back('\n');
      for (std::size_t k = 0; k < depth; ++k) out.push_back('>');
      if (depth) out.push_back(' ');
    }
    if (soft && delsp) content.remove_suffix(1);
    out.append(content);
    joining = soft;
    join_depth = depth;
    if (!soft && nl != std::string_view::npos) out.push_back('\n');
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

std::string sniff_html_charset(std::string_view html) {
  std::string_view head = html.substr(0, 2048);
  for (std::size_t i = 0; i + 8 < head.size(); ++i) {
    if (!iequals(head.substr(i, 8), "charset=")) continue;
    std::size_t j = i + 8;
    while (j < head.size() && (head[j] == '"' || head[j] == '\'')) ++j;
    std::size_t k = j;
    while (k < head.size() && head[k] != '"' && head[k] != '\'' && head[k] != ';' && head[k] != '>' && !is_space(head[k])) ++k;
    return std::string(head.substr(j, k - j));
  }
  return {};
}

std::string decode_text(const text_candidate& c, bool& lossy) {
  std::string bytes = transfer_decode(c.body, c.cte);
  std::string charset = c.charset;
  if (charset.empty() && c.html) charset = sniff_html_charset(bytes);
  // Mislabelled bodies are common: 8-bit text that is valid UTF-8 is UTF-8 (random text in
  // a legacy 8-bit or CJK charset almost never is), and 8-bit "ISO-2022-JP" is EUC-JP.
  const bool eight_bit = has_8bit(bytes);
  if (eight_bit && istarts_with(charset, "iso-2022-jp")) charset = "euc-jp";
  else if (eight_bit && !charset.empty() && is_valid_utf8(bytes)) charset = "utf-8";
  std::string text = to_utf8(bytes, charset, &lossy);
  strip_cr(text);
  if (c.flowed) text = unflow(text, c.delsp);
  if (c.html) text = html_to_text(text);
  for (const auto& m : c.more) {
    std::string part = decode_text(m, lossy);
    if (part.empty()) continue;
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    text += part;
  }
  return text;
}

std::string media_type_of(const structured_value& ct) {
  const std::string& v = ct.value;
  if (v.empty()) return {};
  if (v.find('/') == std::string::npos) {
    if (v == "text") return "text/plain";
    return "application/octet-stream";
  }
  return v;
}

bool is_tnef(std::string_view type, std::string_view name) {
  return type == "application/ms-tnef" || type == "application/vnd.ms-tnef" ||
         iequals(name, "winmail.dat");
}

} // namespace

void walker::walk(std::string_view entity, std::size_t depth, bool attached, bool digest_child,
                  const header_block* presplit) {
  if (parts >= opts.max_parts) {
    if (!parts_capped) warn("more than max_parts MIME parts; the rest is skipped");
    parts_capped = true;
    return;
  }
  ++parts;
  header_block local;
  if (!presplit) local = split_headers(entity, opts.max_headers);
  const header_block& hb = presplit ? *presplit : local;
  if (hb.truncated && depth > 0) warn("part header block over max_headers fields");
  // One pass for the MIME fields (first occurrence wins), not one scan per field.
  const header_field *f_type = nullptr, *f_disp = nullptr, *f_cte = nullptr, *f_id = nullptr;
  for (const auto& f : hb.fields) {
    if (f.name.size() < 10 || ascii_lower(f.name[0]) != 'c') continue;
    if (!f_type && iequals(f.name, "content-type")) f_type = &f;
    else if (!f_disp && iequals(f.name, "content-disposition")) f_disp = &f;
    else if (!f_cte && iequals(f.name, "content-transfer-encoding")) f_cte = &f;
    else if (!f_id && iequals(f.name, "content-id")) f_id = &f;
  }
  std::string scratch;
  structured_value ct;
  if (f_type) ct = parse_structured(unfold(f_type->value, scratch), fallback_charset);
  std::string type = media_type_of(ct);
  if (type.empty()) type = digest_child ? "message/rfc822" : "text/plain";
  structured_value cd;
  if (f_disp) cd = parse_structured(unfold(f_disp->value, scratch), fallback_charset);
  transfer cte = transfer_of(f_cte, *this);
  std::string_view body = hb.body;

  if (type.rfind("multipart/", 0) == 0) {
    const std::string* b = ct.param("boundary");
    if (!b || b->empty()) {
      warn(type + " without boundary; read as text");
      type = "text/plain";
    } else if (depth + 1 >= opts.max_depth) {
      warn("MIME nesting deeper than max_depth; inner parts skipped");
      return;
    } else {
      std::size_t saved_id = multipart_id;
      bool saved_alt = in_alternative;
      multipart_id = next_multipart_id++;
      in_alternative = type == "multipart/alternative";
      walk_multipart(body, *b, depth, attached, type == "multipart/digest");
      multipart_id = saved_id;
      in_alternative = saved_alt;
      return;
    }
  }

  std::string name;
  if (const std::string* fn = cd.param("filename"); fn && !fn->empty()) name = *fn;
  else if (const std::string* nm = ct.param("name"); nm && !nm->empty()) name = *nm;
  bool disp_attachment = cd.value == "attachment";
  std::string content_id;
  if (f_id) content_id = std::string(unfold(f_id->value, scratch));

  auto add_attachment = [&](std::uint64_t size) {
    if (msg.attachments.size() >= opts.max_parts) return;
    attachment a;
    a.name = name;
    a.type = type;
    a.content_id = content_id;
    a.size = size;
    a.is_inline = cd.value == "inline" || (cd.value.empty() && !content_id.empty());
    a.is_tnef = is_tnef(type, name);
    msg.attachments.push_back(std::move(a));
  };
  auto encoded_size = [&]() -> std::uint64_t {
    return cte == transfer::base64 ? base64_decoded_size(body) : body.size();
  };

  if (type == "message/rfc822" || type == "message/global") {
    if (depth + 1 >= opts.max_depth) {
      warn("message/rfc822 nesting deeper than max_depth; skipped");
      add_attachment(encoded_size());
      return;
    }
    std::string_view inner = body;
    if (cte != transfer::identity) {
      buffers.push_back(transfer_decode(body, cte));
      inner = buffers.back();
    }
    add_attachment(inner.size());
    // An attached message starts a new text context: its text never joins its siblings'.
    std::size_t saved_id = multipart_id;
    bool saved_alt = in_alternative;
    multipart_id = 0;
    in_alternative = false;
    walk(inner, depth + 1, true, false);
    multipart_id = saved_id;
    in_alternative = saved_alt;
    return;
  }
  if (type == "message/delivery-status" || type == "message/global-delivery-status") {
    std::string decoded = transfer_decode(body, cte);
    parse_delivery_status(decoded);
    if (!name.empty() || disp_attachment) add_attachment(decoded.size());
    return;
  }
  if (type == "text/calendar" || type == "application/ics") {
    if (!msg.calendar) {
      std::string decoded = transfer_decode(body, cte);
      const std::string* cs = ct.param("charset");
      parse_calendar(to_utf8(decoded, cs ? *cs : std::string_view("utf-8")));
    }
    if (!name.empty() || disp_attachment) add_attachment(encoded_size());
    return;
  }
  bool is_plain = type == "text/plain";
  bool is_html = type == "text/html";
  if ((is_plain || is_html) && !disp_attachment && name.empty()) {
    text_candidate& slot = is_plain ? plain[attached ? 1 : 0] : html[attached ? 1 : 0];
    auto fill = [&](text_candidate& c) {
      c.found = true;
      c.body = body;
      c.cte = cte;
      c.html = is_html;
      c.parent = multipart_id;
      if (const std::string* cs = ct.param("charset")) c.charset = *cs;
      if (const std::string* fmt = ct.param("format")) c.flowed = iequals(*fmt, "flowed");
      if (const std::string* ds = ct.param("delsp")) c.delsp = iequals(*ds, "yes");
    };
    if (!slot.found) fill(slot);
    else if (is_plain && !in_alternative && multipart_id != 0 && slot.parent == multipart_id &&
             slot.more.size() < 16)
      fill(slot.more.emplace_back());
    return;
  }
  if (type.rfind("text/", 0) == 0 && !disp_attachment && name.empty()) return; // other inline text
  if (body.empty() && name.empty() && !disp_attachment) return; // empty non-text stub
  add_attachment(encoded_size());
}

void walker::walk_multipart(std::string_view body, std::string_view boundary, std::size_t depth,
                            bool attached, bool digest) {
  std::string delim = "--";
  delim.append(boundary.substr(0, 1000));
  // Delimiter lines: "--boundary" at a line start, then "--" (close) or only whitespace.
  struct hit {
    std::size_t line_start, next_line;
    bool close;
  };
  auto find_delim = [&](std::size_t from, hit& h) {
    while (from < body.size()) {
      const void* p = memmem(body.data() + from, body.size() - from, delim.data(), delim.size());
      if (!p) return false;
      std::size_t at = std::size_t(static_cast<const char*>(p) - body.data());
      from = at + 1;
      if (at != 0 && body[at - 1] != '\n') continue;
      std::size_t k = at + delim.size();
      bool close = body.substr(k, 2) == "--";
      if (close) k += 2;
      std::size_t e = k;
      while (e < body.size() && (body[e] == ' ' || body[e] == '\t' || body[e] == '\r')) ++e;
      if (e < body.size() && body[e] != '\n') continue; // "--boundaryX": another boundary
      h.line_start = at;
      h.next_line = e < body.size() ? e + 1 : body.size();
      h.close = close;
      return true;
    }
    return false;
  };
  auto part_end = [&](std::size_t delim_line_start) {
    // The line break before a delimiter belongs to the delimiter.
    std::size_t e = delim_line_start;
    if (e > 0 && body[e - 1] == '\n') --e;
    if (e > 0 && body[e - 1] == '\r') --e;
    return e;
  };
  hit h{};
  if (!find_delim(0, h)) {
    warn("multipart boundary never found; body read as text");
    text_candidate& slot = plain[attached ? 1 : 0];
    if (!slot.found && !trim(body).empty()) {
      slot.found = true;
      slot.body = body;
    }
    return;
  }
  std::size_t start = h.next_line;
  bool closed = h.close;
  for (;;) {
    if (closed) {
      // A close delimiter followed by more open delimiters of the same boundary happens when
      // a nested multipart reuses its parent's boundary: keep reading.
      hit again{};
      if (find_delim(start, again) && !again.close) {
        start = again.next_line;
        closed = false;
        continue;
      }
      break;
    }
    hit next{};
    bool found = find_delim(start, next);
    std::size_t end = found ? part_end(next.line_start) : body.size();
    if (end < start) end = start;
    walk(body.substr(start, end - start), depth + 1, attached, digest);
    if (parts_capped) return;
    if (!found) {
      warn("multipart without closing delimiter");
      break;
    }
    start = next.next_line;
    closed = next.close;
  }
}

void walker::parse_delivery_status(std::string_view body) {
  // Per-message fields, then per-recipient groups; tolerate missing blank lines by starting
  // a new group whenever a recipient field repeats.
  std::vector<dsn_group> groups(1);
  std::string scratch;
  header_block hb;
  std::string decoded;
  std::string_view rest = body;
  for (int guard = 0; guard < 1000 && !rest.empty(); ++guard) {
    hb = split_headers(rest, opts.max_headers);
    for (const auto& f : hb.fields) {
      std::string v(unfold(f.value, scratch));
      auto after_type = [&]() {
        auto semi = v.find(';');
        std::string_view a = trim(semi == std::string::npos ? std::string_view(v) : std::string_view(v).substr(semi + 1));
        if (!a.empty() && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
        return std::string(a);
      };
      dsn_group& g = groups.back();
      if (iequals(f.name, "final-recipient")) {
        if (!g.final_rcpt.empty()) groups.emplace_back();
        groups.back().final_rcpt = after_type();
      } else if (iequals(f.name, "original-recipient")) {
        if (!g.original_rcpt.empty() || !g.final_rcpt.empty()) groups.emplace_back();
        groups.back().original_rcpt = after_type();
      } else if (iequals(f.name, "action")) {
        g.action = lower(trim(v));
      } else if (iequals(f.name, "status")) {
        std::string_view s = trim(v);
        g.status = std::string(s.substr(0, s.find_first_of(" \t(")));
      }
    }
    if (hb.body.empty() || hb.body.size() >= rest.size()) break;
    rest = hb.body;
    // Some MTAs (seen from Postfix behind Exchange) base64-encode the per-recipient block
    // and announce it with a Content-Transfer-Encoding field inside the report itself.
    if (const header_field* cte = hb.find("content-transfer-encoding");
        cte && decoded.empty() && iequals(trim(cte->value), "base64")) {
      decode_base64(rest, decoded);
      rest = decoded;
    }
    while (!rest.empty() && (rest.front() == '\n' || rest.front() == '\r')) rest.remove_prefix(1);
    groups.emplace_back();
  }
  bounce_info info;
  for (const auto& g : groups) {
    std::string rcpt = !g.final_rcpt.empty() ? g.final_rcpt : g.original_rcpt;
    if (rcpt.empty()) continue;
    bool failed = g.action.rfind("failed", 0) == 0 || (g.action.empty() && !g.status.empty() && g.status[0] == '5');
    if (!failed) continue;
    info.failed_recipients.push_back(rcpt);
    if (info.status.empty()) info.status = g.status;
  }
  if (info.failed_recipients.empty()) return; // delays / successes are no bounce
  if (!msg.bounce) msg.bounce = std::move(info);
  else
    for (auto& r : info.failed_recipients) msg.bounce->failed_recipients.push_back(std::move(r));
}

void walker::parse_calendar(std::string_view text) {
  calendar_info cal;
  bool in_event = false, event_done = false;
  std::string line;
  auto handle = [&](std::string_view l) {
    std::size_t colon = l.find(':');
    if (colon == std::string_view::npos) return;
    std::string_view key = l.substr(0, colon);
    std::string_view params;
    if (auto semi = key.find(';'); semi != std::string_view::npos) {
      params = key.substr(semi + 1);
      key = key.substr(0, semi);
    }
    std::string_view val = l.substr(colon + 1);
    if (iequals(key, "BEGIN") && iequals(val, "VEVENT")) in_event = true;
    else if (iequals(key, "END") && iequals(val, "VEVENT")) {
      if (in_event) event_done = true;
      in_event = false;
    } else if (iequals(key, "METHOD") && cal.method.empty()) cal.method = std::string(val);
    else if (in_event && !event_done) {
      if (iequals(key, "UID") && cal.uid.empty()) cal.uid = std::string(val);
      else if (iequals(key, "DTSTART") && cal.dtstart.empty()) {
        cal.dtstart = std::string(val);
        (void)params;
      } else if (iequals(key, "SUMMARY") && cal.summary.empty()) {
        std::string s;
        for (std::size_t i = 0; i < val.size(); ++i) {
          if (val[i] == '\\' && i + 1 < val.size()) {
            char n = val[++i];
            s.push_back(n == 'n' || n == 'N' ? '\n' : n);
          } else s.push_back(val[i]);
        }
        cal.summary = std::move(s);
      }
    }
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view l = text.substr(pos, end - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (!l.empty() && (l[0] == ' ' || l[0] == '\t')) line.append(l.substr(1)); // unfold
    else {
      if (!line.empty()) handle(line);
      line.assign(l);
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  if (!line.empty()) handle(line);
  if (!cal.method.empty() || !cal.uid.empty()) msg.calendar = std::move(cal);
}

namespace {

// "<a@b> <c@d>" -> ["<a@b>", "<c@d>"]; a bare "a@b" is wrapped. Comments and folding removed.
std::vector<std::string> parse_msg_ids(std::string_view v, std::size_t limit) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < v.size() && out.size() < limit) {
    char c = v[i];
    if (c == '(') { // comment
      int depth = 1;
      ++i;
      while (i < v.size() && depth) {
        if (v[i] == '\\') ++i;
        else if (v[i] == '(') ++depth;
        else if (v[i] == ')') --depth;
        ++i;
      }
      continue;
    }
    if (c == '<') {
      std::size_t e = v.find('>', i + 1);
      std::string_view inner = v.substr(i + 1, (e == std::string_view::npos ? v.size() : e) - i - 1);
      std::string id;
      id.reserve(inner.size() + 2); // one allocation per id, not a regrowth per byte
      id.push_back('<');
      int depth = 0;
      for (char ch : inner) {
        if (ch == '(') ++depth;
        else if (ch == ')' && depth > 0) --depth;
        else if (depth == 0 && !is_space(ch)) id.push_back(ch);
      }
      id.push_back('>');
      if (id.size() > 2) out.push_back(std::move(id));
      i = e == std::string_view::npos ? v.size() : e + 1;
      continue;
    }
    if (!is_space(c) && c != ',') {
      std::size_t e = i;
      while (e < v.size() && !is_space(v[e]) && v[e] != '<' && v[e] != '(' && v[e] != ',') ++e;
      std::string_view word = v.substr(i, e - i);
      if (word.find('@') != std::string_view::npos && word.front() != '@' && word.back() != '@')
        out.push_back("<" + std::string(word) + ">");
      i = e;
      continue;
    }
    ++i;
  }
  return out;
}

// Every string in a message is valid UTF-8 (JSON writers and RocksDB keys downstream rely on
// it). Decoded fields already are; fields copied from raw bytes may not be.
void make_utf8_clean(message& m) {
  auto fix = [](std::string& s) {
    if (!is_valid_utf8(s)) s = utf8_lossy(s);
  };
  fix(m.message_id);
  for (auto& r : m.in_reply_to) fix(r);
  for (auto& r : m.references) fix(r);
  fix(m.thread_index);
  for (auto& a : m.attachments) {
    fix(a.type);
    fix(a.content_id);
  }
  if (m.calendar) {
    fix(m.calendar->method);
    fix(m.calendar->uid);
    fix(m.calendar->dtstart);
  }
  if (m.bounce) {
    for (auto& r : m.bounce->failed_recipients) fix(r);
    fix(m.bounce->status);
  }
  for (auto& w : m.warnings) fix(w);
}

} // namespace

message parse_message(std::string_view raw, const parse_options& opts) {
  message msg;
  try {
    walker w(opts, msg);
    header_block hb = split_headers(raw, opts.max_headers);
    if (hb.truncated) w.warn("more than max_headers header fields; the rest were skipped");
    if (hb.missing_separator) w.warn("header block not ended by an empty line");
    if (hb.fields.empty()) w.warn("no header fields");
    std::string scratch;
    // Raw 8-bit header bytes are most likely in the charset the sender used for the body.
    if (const header_field* f = hb.find("content-type")) {
      structured_value ct = parse_structured(unfold(f->value, scratch), "");
      if (const std::string* cs = ct.param("charset")) w.fallback_charset = *cs;
    }
    const std::string_view fb = w.fallback_charset;
    const std::size_t addr_limit = 10000;
    bool have_subject = false, have_mid = false, have_date = false, have_irt = false,
         have_refs = false, have_ti = false, have_tt = false;
    std::string failed_hdr, first_received;
    for (const auto& f : hb.fields) {
      std::string_view n = f.name;
      if (n.empty()) continue;
      char c0 = ascii_lower(n[0]);
      // cheap first-letter dispatch keeps the header loop fast on long Received chains
      if (c0 != 'f' && c0 != 't' && c0 != 'c' && c0 != 'b' && c0 != 's' && c0 != 'r' &&
          c0 != 'm' && c0 != 'd' && c0 != 'i' && c0 != 'x')
        continue;
      auto value = [&]() { return unfold(f.value, scratch); };
      bool lossy = false;
      auto addrs = [&](std::vector<address>& into) {
        auto list = parse_addresses(value(), opts, fb, addr_limit, &lossy);
        for (auto& a : list)
          if (into.size() < addr_limit) into.push_back(std::move(a));
      };
      if (iequals(n, "from")) addrs(msg.from);
      else if (iequals(n, "to")) addrs(msg.to);
      else if (iequals(n, "cc")) addrs(msg.cc);
      else if (iequals(n, "bcc")) addrs(msg.bcc);
      else if (iequals(n, "sender")) addrs(msg.sender);
      else if (iequals(n, "reply-to")) addrs(msg.reply_to);
      else if (iequals(n, "delivered-to")) addrs(msg.delivered_to);
      else if (iequals(n, "subject") && !have_subject) {
        have_subject = true;
        msg.subject = decode_header_text(value(), fb, &lossy);
      } else if (iequals(n, "message-id") && !have_mid) {
        auto ids = parse_msg_ids(value(), 1);
        if (!ids.empty()) {
          have_mid = true;
          msg.message_id = std::move(ids.front());
        }
      } else if (iequals(n, "in-reply-to") && !have_irt) {
        have_irt = true;
        msg.in_reply_to = parse_msg_ids(value(), 100);
      } else if (iequals(n, "references") && !have_refs) {
        have_refs = true;
        msg.references = parse_msg_ids(value(), 1000);
      } else if (iequals(n, "date") && !have_date) {
        have_date = true;
        msg.date = parse_date(value());
        if (!msg.date) w.warn("unparseable Date header");
      } else if (iequals(n, "thread-index") && !have_ti) {
        have_ti = true;
        msg.thread_index = std::string(value());
      } else if (iequals(n, "thread-topic") && !have_tt) {
        have_tt = true;
        msg.thread_topic = decode_header_text(value(), fb, &lossy);
      } else if (iequals(n, "received") && first_received.empty()) {
        first_received = std::string(value());
      } else if (iequals(n, "x-failed-recipients") && failed_hdr.empty()) {
        failed_hdr = std::string(value());
      }
      if (lossy) w.warn(std::string(n.substr(0, 40)) + ": unknown charset or invalid bytes; decoded lossy");
    }
    msg.normalized_subject = normalize_subject(msg.subject);
    // No usable Date: the newest Received stamp ("...; Tue, 1 Jul 2003 10:52:37 +0200") is
    // when the message reached the mailbox, a better sort key than nothing.
    if (!msg.date && !first_received.empty()) {
      if (auto semi = first_received.rfind(';'); semi != std::string::npos) {
        msg.date = parse_date(std::string_view(first_received).substr(semi + 1));
        if (msg.date) w.warn("Date taken from the newest Received header");
      }
    }

    // The MIME tree: the top-level entity is the whole raw message (its headers re-split).
    w.walk(raw, 0, false, false, &hb);

    bool body_lossy = false;
    const text_candidate* chosen = nullptr;
    for (int k = 0; k < 2 && msg.body_text.empty(); ++k) {
      if (w.plain[k].found) msg.body_text = decode_text(*(chosen = &w.plain[k]), body_lossy);
      if (msg.body_text.empty() && w.html[k].found) msg.body_text = decode_text(*(chosen = &w.html[k]), body_lossy);
    }
    if (body_lossy && chosen)
      w.warn("body text: unknown charset or invalid bytes for charset '" + chosen->charset.substr(0, 40) + "'; decoded lossy");
    if (opts.reply_above) msg.reply_above = extract_reply_above(msg.body_text, opts.reply_marker);

    if (!failed_hdr.empty() && !msg.bounce) {
      bounce_info b;
      for (auto& a : parse_addresses(failed_hdr, opts, fb, 100)) b.failed_recipients.push_back(a.email);
      if (!b.failed_recipients.empty()) msg.bounce = std::move(b);
    }
    make_utf8_clean(msg);
  } catch (const std::exception& e) {
    // Only allocation failure can get here; keep what was read.
    if (msg.warnings.size() < max_warnings) msg.warnings.push_back(std::string("parse aborted: ") + e.what());
  }
  return msg;
}

} // namespace mscan::mime
