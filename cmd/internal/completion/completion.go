// Package completion writes the bash and zsh completion scripts of hufu and hufud. Both
// programs are built on urfave/cli, which lists the candidates for a command line when it
// ends in --generate-bash-completion; the scripts only run the program that way and hand
// its answer to the shell.
package completion

import (
	"fmt"
	"regexp"
	"strings"
)

// Shells are the shells a script can be written for.
var Shells = []string{"bash", "zsh"}

// The scripts ask PROG for the candidates with the words before the cursor, and the word at
// the cursor too when it is a flag (urfave then lists flags instead of commands). zsh shows
// the candidates or, when there are none (a file argument), completes file names.
const bash = `# bash completion for PROG: source <(PROG completion bash)
_PROG_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local -a args=("${COMP_WORDS[@]:1:COMP_CWORD-1}")
  [[ $cur == -* ]] && args+=("$cur")
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${args[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _PROG_complete PROG
`

const zsh = `#compdef PROG
# zsh completion for PROG: source <(PROG completion zsh), or save as _PROG in $fpath
_PROG() {
  local cur=${words[CURRENT]}
  local -a args=("${(@)words[2,CURRENT-1]}")
  [[ $cur == -* ]] && args+=("$cur")
  local -a opts=("${(@f)$(${words[1]} "${args[@]}" --generate-bash-completion 2>/dev/null)}")
  if [[ -n ${opts[1]} ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _PROG PROG
`

var progRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// Script returns the completion script of program prog for shell.
func Script(shell, prog string) (string, error) {
	if !progRE.MatchString(prog) {
		return "", fmt.Errorf("completion: program name %q", prog)
	}
	var s string
	switch shell {
	case "bash":
		s = bash
	case "zsh":
		s = zsh
	default:
		return "", fmt.Errorf("completion %q: want %s", shell, strings.Join(Shells, " or "))
	}
	// Function names cannot hold '-'.
	s = strings.ReplaceAll(s, "_PROG", "_"+strings.ReplaceAll(prog, "-", "_"))
	return strings.ReplaceAll(s, "PROG", prog), nil
}
