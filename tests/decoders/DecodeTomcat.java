// The differential test's Java decoder (tests/decoders/): request parameters
// decoded the way Tomcat's org.apache.tomcat.util.http.Parameters
// .processParameters does, with the JDK's own charsets:
//
//   - the bytes are split on '&'; a name ends at the first '=';
//   - a name or value holding '%' or '+' is URL-decoded to bytes ('+' a space,
//     %XX a byte; an invalid escape drops the pair, as Tomcat's UDecoder
//     throws and processParameters skips it);
//   - the bytes become a String with the charset (malformed input replaced).
//
// A form body is decoded with each charset its Content-Type declares (the
// case's "charsets", every charset= parameter: servers differ in which one
// they take), ISO-8859-1 when it declares none. A query is decoded with UTF-8
// (Tomcat's URIEncoding) and also with each declared charset (Tomcat's
// useBodyEncodingForURI). A charset the JDK does not know fails the request
// in Tomcat: that reading yields no pair and names the error.
//
// In:  one case per line, {"id": n, "where": "query"|"form", "charsets": [...], "data": "<base64>", ...}.
// Out: one line per case, {"id": n, "r": {"java:<charset>": [[name, value], ...], ...},
//      "err": {"java:<charset>": "..."}}; query readings with a declared charset
//      are named "java-body-enc:<charset>".

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.nio.ByteBuffer;
import java.nio.charset.Charset;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public final class DecodeTomcat {
    /** Thrown for an escape Tomcat's UDecoder refuses. */
    static final class DecodeException extends Exception {
        DecodeException() { super(null, null, false, false); }
    }

    static int hex(byte b) {
        if (b >= '0' && b <= '9') return b - '0';
        if (b >= 'a' && b <= 'f') return b - 'a' + 10;
        if (b >= 'A' && b <= 'F') return b - 'A' + 10;
        return -1;
    }

    /** UDecoder.convert(bc, query = true). */
    static byte[] urlDecode(byte[] b, int start, int end) throws DecodeException {
        byte[] out = new byte[end - start];
        int n = 0;
        for (int j = start; j < end; j++) {
            byte c = b[j];
            if (c == '+') {
                out[n++] = ' ';
            } else if (c == '%') {
                if (j + 2 >= end) throw new DecodeException();
                int h = hex(b[j + 1]), l = hex(b[j + 2]);
                if (h < 0 || l < 0) throw new DecodeException();
                out[n++] = (byte) (h * 16 + l);
                j += 2;
            } else {
                out[n++] = c;
            }
        }
        byte[] r = new byte[n];
        System.arraycopy(out, 0, r, 0, n);
        return r;
    }

    static String text(byte[] b, int start, int end, boolean decode, Charset cs) throws DecodeException {
        byte[] bytes;
        if (decode) {
            bytes = urlDecode(b, start, end);
        } else {
            bytes = new byte[end - start];
            System.arraycopy(b, start, bytes, 0, end - start);
        }
        // ByteChunk.toString: the charset's decoder, malformed input replaced.
        try {
            return cs.newDecoder().onMalformedInput(CodingErrorAction.REPLACE)
                    .onUnmappableCharacter(CodingErrorAction.REPLACE).decode(ByteBuffer.wrap(bytes)).toString();
        } catch (IOException e) {
            return new String(bytes, cs);
        }
    }

    /** Parameters.processParameters(bytes, start, len, charset). */
    static void processParameters(byte[] bytes, Charset charset, List<String[]> out) {
        int pos = 0;
        int end = bytes.length;
        while (pos < end) {
            int nameStart = pos;
            int nameEnd = -1;
            int valueStart = -1;
            int valueEnd = -1;
            boolean parsingName = true;
            boolean decodeName = false;
            boolean decodeValue = false;
            boolean parameterComplete = false;
            do {
                switch (bytes[pos]) {
                    case '=':
                        if (parsingName) {
                            nameEnd = pos;
                            parsingName = false;
                            valueStart = ++pos;
                        } else {
                            pos++;
                        }
                        break;
                    case '&':
                        if (parsingName) {
                            nameEnd = pos;
                        } else {
                            valueEnd = pos;
                        }
                        parameterComplete = true;
                        pos++;
                        break;
                    case '%':
                    case '+':
                        if (parsingName) {
                            decodeName = true;
                        } else {
                            decodeValue = true;
                        }
                        pos++;
                        break;
                    default:
                        pos++;
                        break;
                }
            } while (!parameterComplete && pos < end);
            if (pos == end) {
                if (nameEnd == -1) {
                    nameEnd = pos;
                } else if (valueStart > -1 && valueEnd == -1) {
                    valueEnd = pos;
                }
            }
            if (nameEnd <= nameStart) {
                continue; // "&&" or "&=foo&": no name
            }
            try {
                String name = text(bytes, nameStart, nameEnd, decodeName, charset);
                String value = valueStart >= 0 ? text(bytes, valueStart, valueEnd, decodeValue, charset) : "";
                out.add(new String[] {name, value});
            } catch (DecodeException e) {
                // Tomcat skips a parameter it cannot decode.
            }
        }
    }

    // ---- the small JSON this program reads and writes ----

    static final class In {
        final String s;
        int i;
        In(String s) { this.s = s; }
        void ws() { while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++; }
        char peek() { ws(); return s.charAt(i); }
        void expect(char c) {
            if (peek() != c) throw new IllegalArgumentException("expected " + c + " at " + i + ": " + s);
            i++;
        }
        Object value() {
            char c = peek();
            if (c == '"') return string();
            if (c == '[') {
                i++;
                List<Object> l = new ArrayList<>();
                if (peek() == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    if (peek() == ',') { i++; continue; }
                    expect(']');
                    return l;
                }
            }
            if (c == '{') {
                i++;
                Map<String, Object> m = new LinkedHashMap<>();
                if (peek() == '}') { i++; return m; }
                while (true) {
                    String k = string();
                    expect(':');
                    m.put(k, value());
                    if (peek() == ',') { i++; continue; }
                    expect('}');
                    return m;
                }
            }
            int st = i;
            while (i < s.length() && ",]} \t\r\n".indexOf(s.charAt(i)) < 0) i++;
            String lit = s.substring(st, i);
            if (lit.equals("null")) return null;
            if (lit.equals("true")) return Boolean.TRUE;
            if (lit.equals("false")) return Boolean.FALSE;
            return Long.parseLong(lit);
        }
        String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n': b.append('\n'); break;
                    case 't': b.append('\t'); break;
                    case 'r': b.append('\r'); break;
                    case 'b': b.append('\b'); break;
                    case 'f': b.append('\f'); break;
                    case 'u': b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; break;
                    default: b.append(e);
                }
            }
        }
    }

    static void quote(StringBuilder b, String s) {
        b.append('"');
        for (int k = 0; k < s.length(); k++) {
            char c = s.charAt(k);
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        b.append('"');
    }

    static Charset charset(String label) {
        try {
            return Charset.forName(label);
        } catch (IllegalArgumentException e) {
            return null; // unknown or illegal name
        }
    }

    public static void main(String[] args) throws IOException {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8), 1 << 16);
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) continue;
            @SuppressWarnings("unchecked")
            Map<String, Object> c = (Map<String, Object>) new In(line).value();
            byte[] data = Base64.getDecoder().decode((String) c.get("data"));
            boolean query = "query".equals(c.get("where"));
            List<String[]> readings = new ArrayList<>(); // {reading name, charset label}
            Object cs = c.get("charsets");
            List<?> labels = cs instanceof List ? (List<?>) cs : List.of();
            if (query) {
                readings.add(new String[] {"java:utf-8", "UTF-8"});
                for (Object l : labels) readings.add(new String[] {"java-body-enc:" + l, (String) l});
            } else if (labels.isEmpty()) {
                readings.add(new String[] {"java:iso-8859-1", "ISO-8859-1"});
            } else {
                for (Object l : labels) readings.add(new String[] {"java:" + l, (String) l});
            }
            StringBuilder b = new StringBuilder(256);
            StringBuilder err = new StringBuilder();
            b.append("{\"id\":").append(c.get("id")).append(",\"r\":{");
            boolean firstReading = true;
            for (String[] r : readings) {
                Charset charset = charset(r[1]);
                if (charset == null) {
                    if (err.length() > 0) err.append(',');
                    quote(err, r[0]);
                    err.append(":\"unsupported charset\"");
                    continue;
                }
                List<String[]> pairs = new ArrayList<>();
                processParameters(data, charset, pairs);
                if (!firstReading) b.append(',');
                firstReading = false;
                quote(b, r[0]);
                b.append(":[");
                for (int k = 0; k < pairs.size(); k++) {
                    if (k > 0) b.append(',');
                    b.append('[');
                    quote(b, pairs.get(k)[0]);
                    b.append(',');
                    quote(b, pairs.get(k)[1]);
                    b.append(']');
                }
                b.append(']');
            }
            b.append('}');
            if (err.length() > 0) b.append(",\"err\":{").append(err).append('}');
            b.append("}\n");
            out.write(b.toString());
        }
        out.flush();
    }
}
