#pragma once
// The corpus files (../shared/corpus/real) whose MIME is malformed in a way where a server's
// splitter (dovecot 2.3.19, the simulator's, the transcript server's) draws part or header
// boundaries differently from our MIME parser, so BODYSTRUCTURE already describes another
// tree and the structure fetch cannot reproduce the whole message's parse. E.g. 048 starts
// with a byte-order mark, so our parser sees no header at all; 050 has a header line that
// is neither a field nor a fold, where our parser ends the header and servers do not.
#include <set>
#include <string>

namespace mscan::test {

inline const std::set<std::string>& corpus_structure_differs() {
  static const std::set<std::string> names = {
      "024-multipart-missing-body.eml", "046-empty-multipart-alternative.eml",
      "048-arf-feedback-report-8bit.eml", "050-outlook-reply-chain-tnef.eml",
      "062-no-header-at-all.eml", "072-bounce-bad-boundary.eml",
      "085-garbled-duplicated-headers.eml", "090-not-a-message.eml",
      "107-raw-utf8-from-bad-boundary.eml", "108-false-multipart.eml",
      "124-mbox-from-line-badmime.eml", "144-same-boundary-nested-mac-oe.eml",
      "145-no-blank-line-before-body.eml"};
  return names;
}

} // namespace mscan::test
