// Command toolbox is a static stand-in for the two Alpine tools the e2e specs
// run inside upstream's agnhost image: curl (the lifecycle hook and
// networking specs: plain GETs with -s/-g/-q/--max-time/-w) and netcat (the
// networking specs: `echo hostName | nc -u -w 1 IP PORT`, TCP alike). It
// implements only the options those specs pass and fails loudly (exit 2) on
// any other, so a spec never passes by accident. Installed as /usr/bin/curl
// and /usr/bin/nc (symlinks); the name it is called by picks the tool.
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "toolbox" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "curl":
		os.Exit(curl(args))
	case "nc", "netcat":
		os.Exit(nc(args))
	}
	fmt.Fprintf(os.Stderr, "toolbox: unknown tool %q (curl, nc)\n", name)
	os.Exit(2)
}

func usage(tool, msg string) int {
	fmt.Fprintf(os.Stderr, "%s (picolet test stand-in): %s\n", tool, msg)
	return 2
}

// seconds parses curl's and nc's decimal second counts.
func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func curl(args []string) int {
	method, output, format, data := "", "", "", ""
	var headers []string
	var url string
	silent, showErr, insecure, fail, head, follow, hasData := false, false, false, false, false, false, false
	maxTime, connectTimeout := time.Duration(0), 300*time.Second
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, bool) {
			if i+1 >= len(args) {
				return "", false
			}
			i++
			return args[i], true
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			if url != "" {
				return usage("curl", "more than one URL")
			}
			url = a
			continue
		}
		if strings.HasPrefix(a, "--") {
			var ok bool
			var v string
			switch a {
			case "--silent":
				silent = true
			case "--show-error":
				showErr = true
			case "--insecure":
				insecure = true
			case "--fail":
				fail = true
			case "--head":
				head = true
			case "--location":
				follow = true
			case "--globoff", "--disable", "--verbose":
			case "--request":
				method, ok = value()
			case "--output":
				output, ok = value()
			case "--write-out":
				format, ok = value()
			case "--header":
				v, ok = value()
				headers = append(headers, v)
			case "--data", "--data-raw", "--data-binary":
				data, ok = value()
				hasData = true
			case "--max-time", "--connect-timeout":
				v, ok = value()
				if ok {
					d, err := seconds(v)
					if err != nil {
						return usage("curl", err.Error())
					}
					if a == "--max-time" {
						maxTime = d
					} else {
						connectTimeout = d
					}
				}
			default:
				return usage("curl", "unsupported option "+a)
			}
			if !ok && strings.Contains("--request --output --write-out --header --data --data-raw --data-binary --max-time --connect-timeout", a) {
				return usage("curl", a+" needs a value")
			}
			continue
		}
		// Short options, possibly grouped (-sIk); one taking a value ends the group
		// and takes the rest of it (-XGET) or the next argument.
		for j := 1; j < len(a); j++ {
			c := a[j]
			switch c {
			case 's':
				silent = true
			case 'S':
				showErr = true
			case 'k':
				insecure = true
			case 'f':
				fail = true
			case 'I':
				head = true
			case 'L':
				follow = true
			case 'g', 'q', 'v':
			case 'X', 'o', 'w', 'H', 'd', 'm':
				v := a[j+1:]
				if v == "" {
					var ok bool
					if v, ok = value(); !ok {
						return usage("curl", "-"+string(c)+" needs a value")
					}
				}
				switch c {
				case 'X':
					method = v
				case 'o':
					output = v
				case 'w':
					format = v
				case 'H':
					headers = append(headers, v)
				case 'd':
					data, hasData = v, true
				case 'm':
					d, err := seconds(v)
					if err != nil {
						return usage("curl", err.Error())
					}
					maxTime = d
				}
				j = len(a)
			default:
				return usage("curl", "unsupported option -"+string(c))
			}
		}
	}
	if url == "" {
		return usage("curl", "no URL")
	}
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	if method == "" {
		switch {
		case head:
			method = http.MethodHead
		case hasData:
			method = http.MethodPost
		default:
			method = http.MethodGet
		}
	}
	var body io.Reader
	if hasData {
		body = strings.NewReader(data)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return usage("curl", err.Error())
	}
	req.Header.Set("User-Agent", "curl/picolet-stand-in")
	if hasData {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return usage("curl", "bad header "+h)
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	client := &http.Client{
		Timeout: maxTime,
		Transport: &http.Transport{
			DialContext:     (&net.Dialer{Timeout: connectTimeout}).DialContext,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: insecure},
			Proxy:           nil,
		},
	}
	if !follow {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	resp, err := client.Do(req)
	if err != nil {
		if !silent || showErr {
			fmt.Fprintf(os.Stderr, "curl: %v\n", err)
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 28
		}
		return 7
	}
	defer resp.Body.Close()
	if fail && resp.StatusCode >= 400 {
		if !silent || showErr {
			fmt.Fprintf(os.Stderr, "curl: (22) The requested URL returned error: %d\n", resp.StatusCode)
		}
		return 22
	}
	out := io.Writer(os.Stdout)
	if output != "" && output != "-" {
		f, err := os.Create(output)
		if err != nil {
			fmt.Fprintf(os.Stderr, "curl: %v\n", err)
			return 23
		}
		defer f.Close()
		out = f
	}
	if head {
		fmt.Fprintf(out, "%s %s\r\n", resp.Proto, resp.Status)
		resp.Header.Write(out)
		fmt.Fprint(out, "\r\n")
	} else if _, err := io.Copy(out, resp.Body); err != nil {
		if !silent || showErr {
			fmt.Fprintf(os.Stderr, "curl: %v\n", err)
		}
		return 56
	}
	if format != "" {
		w := strings.NewReplacer("%{http_code}", fmt.Sprintf("%03d", resp.StatusCode), `\n`, "\n", `\t`, "\t").Replace(format)
		fmt.Fprint(os.Stdout, w)
	}
	return 0
}

func nc(args []string) int {
	udp, listen, verbose := false, false, false
	wait := time.Duration(0)
	localPort := ""
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			switch c := a[j]; c {
			case 'u':
				udp = true
			case 't':
				udp = false
			case 'l':
				listen = true
			case 'v':
				verbose = true
			case 'n':
			case 'w', 'p':
				v := a[j+1:]
				if v == "" {
					if i+1 >= len(args) {
						return usage("nc", "-"+string(c)+" needs a value")
					}
					i++
					v = args[i]
				}
				if c == 'w' {
					d, err := seconds(v)
					if err != nil {
						return usage("nc", err.Error())
					}
					wait = d
				} else {
					localPort = v
				}
				j = len(a)
			default:
				return usage("nc", "unsupported option -"+string(c))
			}
		}
	}
	network := "tcp"
	if udp {
		network = "udp"
	}
	if listen {
		port := localPort
		if len(pos) == 1 {
			port = pos[0]
		}
		if port == "" || len(pos) > 1 {
			return usage("nc", "listen needs one port")
		}
		return ncListen(network, port, verbose)
	}
	if len(pos) != 2 {
		return usage("nc", "needs HOST PORT")
	}
	addr := net.JoinHostPort(pos[0], pos[1])
	d := net.Dialer{Timeout: wait}
	if localPort != "" {
		p, err := strconv.Atoi(localPort)
		if err != nil {
			return usage("nc", "bad port "+localPort)
		}
		if udp {
			d.LocalAddr = &net.UDPAddr{Port: p}
		} else {
			d.LocalAddr = &net.TCPAddr{Port: p}
		}
	}
	conn, err := d.Dial(network, addr)
	if err != nil {
		if verbose {
			fmt.Fprintf(os.Stderr, "nc: connect to %s (%s) failed: %v\n", addr, network, err)
		}
		return 1
	}
	defer conn.Close()
	if verbose {
		fmt.Fprintf(os.Stderr, "Connection to %s %s port [%s] succeeded!\n", pos[0], pos[1], network)
	}
	// Send stdin, then print what comes back until EOF, or until -w passes
	// without data (openbsd nc's idle timeout; UDP has no EOF).
	sent := make(chan error, 1)
	go func() {
		var err error
		if udp {
			// One datagram per read of stdin, as nc does.
			buf := make([]byte, 65507)
			for {
				n, rerr := os.Stdin.Read(buf)
				if n > 0 {
					if _, werr := conn.Write(buf[:n]); werr != nil {
						err = werr
						break
					}
				}
				if rerr != nil {
					break
				}
			}
		} else {
			_, err = io.Copy(conn, os.Stdin)
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
		sent <- err
	}()
	buf := make([]byte, 65536)
	for {
		if wait > 0 {
			conn.SetReadDeadline(time.Now().Add(wait))
		}
		n, err := conn.Read(buf)
		if n > 0 {
			os.Stdout.Write(buf[:n])
		}
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return 0
			}
			if err == io.EOF {
				return 0
			}
			if udp {
				// Refused (ICMP port unreachable): as nc, an error.
				if verbose {
					fmt.Fprintf(os.Stderr, "nc: %v\n", err)
				}
				return 1
			}
			return 0
		}
	}
}

func ncListen(network, port string, verbose bool) int {
	if network == "udp" {
		pc, err := net.ListenPacket("udp", ":"+port)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nc: %v\n", err)
			return 1
		}
		defer pc.Close()
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return 1
			}
			os.Stdout.Write(buf[:n])
		}
	}
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nc: %v\n", err)
		return 1
	}
	defer l.Close()
	conn, err := l.Accept()
	if err != nil {
		return 1
	}
	defer conn.Close()
	if verbose {
		fmt.Fprintf(os.Stderr, "Connection received from %s\n", conn.RemoteAddr())
	}
	go io.Copy(conn, os.Stdin)
	io.Copy(os.Stdout, conn)
	return 0
}
