// Address lists (RFC 5322 section 3.4 plus the obsolete syntax of section 4.4 and what
// mailers really send): a tokenizer that never fails, then a lenient item grouping.
#include "protocols/mime/addresses.hpp"

#include "protocols/mime/detail.hpp"
#include "protocols/mime/message.hpp"

namespace mscan::mime {
namespace detail {
namespace {

enum class tok { atom, quoted, comment, angle, comma, semicolon, colon, ws };

struct token {
  tok kind;
  std::string_view text; // atom text, or the inside of quotes/comment/angle (raw)
};

// Never fails: unterminated quotes, comments and angle brackets run to the end.
void tokenize(std::string_view s, std::vector<token>& out) {
  std::size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (is_space(c)) {
      std::size_t j = i;
      while (j < s.size() && is_space(s[j])) ++j;
      out.push_back({tok::ws, s.substr(i, j - i)});
      i = j;
    } else if (c == '"') {
      std::size_t j = i + 1;
      while (j < s.size() && s[j] != '"') j += (s[j] == '\\' && j + 1 < s.size()) ? 2 : 1;
      out.push_back({tok::quoted, s.substr(i + 1, std::min(j, s.size()) - i - 1)});
      i = j + 1;
    } else if (c == '(') {
      int depth = 1;
      std::size_t j = i + 1;
      while (j < s.size() && depth > 0) {
        if (s[j] == '\\') ++j;
        else if (s[j] == '(') ++depth;
        else if (s[j] == ')') --depth;
        ++j;
      }
      std::size_t end = depth == 0 ? j - 1 : s.size();
      out.push_back({tok::comment, s.substr(i + 1, std::min(end, s.size()) - i - 1)});
      i = std::min(j, s.size());
    } else if (c == '<') {
      std::size_t j = i + 1;
      // quoted local parts may hold '>'
      while (j < s.size() && s[j] != '>') {
        if (s[j] == '"') {
          ++j;
          while (j < s.size() && s[j] != '"') j += (s[j] == '\\' && j + 1 < s.size()) ? 2 : 1;
        }
        ++j;
      }
      out.push_back({tok::angle, s.substr(i + 1, std::min(j, s.size()) - i - 1)});
      i = j + 1;
    } else if (c == ',') {
      out.push_back({tok::comma, s.substr(i, 1)});
      ++i;
    } else if (c == ';') {
      out.push_back({tok::semicolon, s.substr(i, 1)});
      ++i;
    } else if (c == ':') {
      out.push_back({tok::colon, s.substr(i, 1)});
      ++i;
    } else if (c == '>' || c == ')') {
      ++i; // stray closer
    } else {
      std::size_t j = i;
      while (j < s.size() && !is_space(s[j]) && s[j] != '"' && s[j] != '(' && s[j] != '<' &&
             s[j] != ',' && s[j] != ';' && s[j] != ':' && s[j] != '>' && s[j] != ')')
        ++j;
      out.push_back({tok::atom, s.substr(i, j - i)});
      i = j;
    }
  }
}

void unescape_into(std::string_view q, std::string& out) {
  for (std::size_t i = 0; i < q.size(); ++i) {
    if (q[i] == '\\' && i + 1 < q.size()) ++i;
    out.push_back(q[i]);
  }
}

// addr-spec text without comments and whitespace; obsolete source route dropped.
std::string clean_addr_spec(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  int depth = 0;
  bool in_quote = false;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (in_quote) {
      out.push_back(c);
      if (c == '\\' && i + 1 < in.size()) out.push_back(in[++i]);
      else if (c == '"') in_quote = false;
      continue;
    }
    if (depth > 0) {
      if (c == '\\') ++i;
      else if (c == '(') ++depth;
      else if (c == ')') --depth;
      continue;
    }
    if (c == '(') ++depth;
    else if (c == '"') {
      in_quote = true;
      out.push_back(c);
    } else if (!is_space(c)) out.push_back(c);
  }
  if (!out.empty() && out.front() == '@') { // <@route1,@route2:user@domain>
    auto colon = out.find(':');
    out.erase(0, colon == std::string::npos ? out.size() : colon + 1);
  }
  return out;
}

} // namespace

void finish_address(address& a, const parse_options& opts) {
  auto at = a.email.rfind('@');
  if (at != std::string::npos)
    for (std::size_t k = at + 1; k < a.email.size(); ++k) a.email[k] = ascii_lower(a.email[k]);
  a.normalized = normalize_for_matching(a.email, opts.strip_subaddress);
}

std::vector<address> parse_addresses(std::string_view value, const parse_options& opts,
                                     std::string_view fallback_charset, std::size_t limit,
                                     bool* lossy) {
  std::vector<address> result;
  std::vector<token> toks;
  toks.reserve(16);  // "Name" <a@b>, <c@d>: one allocation, not one per doubling
  tokenize(value, toks);

  auto phrase_of = [&](std::size_t b, std::size_t e) {
    std::string raw;
    bool pending_space = false;
    for (std::size_t k = b; k < e; ++k) {
      const token& t = toks[k];
      if (t.kind == tok::ws) {
        pending_space = !raw.empty();
        continue;
      }
      if (t.kind == tok::comment) continue;
      if (pending_space) raw.push_back(' ');
      pending_space = false;
      if (t.kind == tok::quoted) unescape_into(t.text, raw);
      else raw.append(t.text);
    }
    std::string name = decode_header_text(trim(raw), fallback_charset, lossy);
    // Control characters (an encoded "=0A") would break one-line displays.
    for (char& c : name)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    std::string_view tn = trim(name);
    return std::string(tn);
  };
  auto add = [&](std::string name, std::string email) {
    if (email.empty() || result.size() >= limit) return;
    address a;
    a.display_name = std::move(name);
    a.email = is_valid_utf8(email) ? std::move(email) : raw_header_to_utf8(email, fallback_charset, lossy);
    finish_address(a, opts);
    result.push_back(std::move(a));
  };

  // One list item: tokens [b, e) between separators.
  auto item = [&](std::size_t b, std::size_t e) {
    std::size_t phrase_begin = b;
    bool any_angle = false;
    for (std::size_t k = b; k < e; ++k) {
      if (toks[k].kind != tok::angle) continue;
      any_angle = true;
      std::string_view inside = toks[k].text;
      // "<Undisclosed-Recipient:@host;>": a group squeezed into brackets, no mailbox.
      std::string email = clean_addr_spec(inside);
      if (istarts_with(email, "mailto:")) email.erase(0, 7);
      // A ':' before the '@' (not inside an "[IPv6:...]" domain literal) or a ';' means a group.
      auto colon = email.find(':');
      auto at = email.find('@');
      if ((colon != std::string::npos && (at == std::string::npos || colon < at)) ||
          email.find(';') != std::string::npos) {
        phrase_begin = k + 1;
        continue;
      }
      add(phrase_of(phrase_begin, k), std::move(email));
      phrase_begin = k + 1; // "A <a@x> B <b@x>" without a comma: two mailboxes
    }
    if (any_angle) return;
    // Bare addr-spec(s). Words separated by whitespace that each hold an '@' are separate
    // mailboxes ("a@x b@y"); otherwise the pieces form one addr-spec ("jdoe@test . example").
    std::vector<std::string> words(1);
    for (std::size_t k = b; k < e; ++k) {
      const token& t = toks[k];
      if (t.kind == tok::ws) {
        if (!words.back().empty()) words.emplace_back();
      } else if (t.kind == tok::quoted) {
        words.back().push_back('"');
        words.back().append(t.text);
        words.back().push_back('"');
      } else if (t.kind == tok::atom) {
        words.back().append(t.text);
      }
    }
    if (words.back().empty()) words.pop_back();
    std::size_t with_at = 0;
    for (auto& w : words)
      if (w.find('@') != std::string::npos && w.front() != '@' && w.back() != '@') ++with_at;
    if (with_at >= 2 && with_at == words.size()) {
      for (auto& w : words) add({}, std::move(w));
      return;
    }
    // "Name Words local@domain" without brackets: the last word is the address.
    if (with_at == 1 && words.size() > 1 && words.back().find('@') != std::string::npos) {
      bool dotted = false;
      for (auto& w : words) dotted = dotted || w.front() == '.' || w.back() == '.';
      if (!dotted) {
        std::string name;
        for (std::size_t k = 0; k + 1 < words.size(); ++k) {
          if (!name.empty()) name.push_back(' ');
          name += words[k];
        }
        add(decode_header_text(name, fallback_charset, lossy), std::move(words.back()));
        return;
      }
    }
    std::string joined;
    for (auto& w : words) joined += w;
    // Several words and no '@': a display name without an address, not a mailbox.
    if (joined.find('@') == std::string::npos && words.size() > 1) return;
    // A display name without an address ("Bob Smith" or an encoded word) is no mailbox.
    if (joined.find("=?") != std::string::npos && joined.find('@') == std::string::npos) return;
    add({}, std::move(joined));
  };

  std::size_t start = 0;
  bool seen_angle = false, seen_at = false;
  for (std::size_t k = 0; k < toks.size(); ++k) {
    const token& t = toks[k];
    switch (t.kind) {
      case tok::comma:
      case tok::semicolon:
        item(start, k);
        start = k + 1;
        seen_angle = seen_at = false;
        break;
      case tok::colon:
        if (!seen_angle && !seen_at) start = k + 1; // "Group name:" -- drop the name
        break;
      case tok::angle:
        seen_angle = true;
        break;
      case tok::atom:
        if (t.text.find('@') != std::string_view::npos) seen_at = true;
        break;
      default:
        break;
    }
  }
  item(start, toks.size());
  return result;
}

} // namespace detail

std::vector<address> parse_address_list(std::string_view value, const parse_options& opts) {
  std::string scratch;
  return detail::parse_addresses(detail::unfold(value, scratch), opts, "", 10000);
}

} // namespace mscan::mime
