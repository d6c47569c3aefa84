// CodeMirror 6 with Python highlighting. Uncontrolled inside, synced to `value` when the
// parent replaces the text (e.g. a file was loaded into the editor).
import { useEffect, useRef } from "react";
import { EditorState } from "@codemirror/state";
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, HighlightStyle, indentOnInput, syntaxHighlighting } from "@codemirror/language";
import { tags } from "@lezer/highlight";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { python } from "@codemirror/lang-python";

/**
 * Syntax colours at WCAG AA contrast on our background, light and dark (styles.css --hl-*);
 * CodeMirror's default style has colours below 4.5:1.
 */
const accessibleHighlight = HighlightStyle.define([
  { tag: [tags.keyword, tags.controlKeyword, tags.moduleKeyword, tags.operatorKeyword, tags.definitionKeyword], color: "var(--hl-keyword)" },
  { tag: [tags.string, tags.special(tags.string)], color: "var(--hl-string)" },
  { tag: [tags.number, tags.bool, tags.null, tags.atom], color: "var(--hl-number)" },
  { tag: [tags.comment, tags.lineComment, tags.blockComment], color: "var(--hl-comment)", fontStyle: "italic" },
  { tag: [tags.function(tags.variableName), tags.function(tags.definition(tags.variableName)), tags.definition(tags.className)], color: "var(--hl-name)" },
  { tag: tags.invalid, color: "var(--bad)" },
]);

interface Props {
  value: string;
  onChange: (value: string) => void;
  label: string;
  id?: string;
  describedBy?: string;
  language?: "python" | "text";
  minHeight?: string;
}

export function CodeEditor({ value, onChange, label, id, describedBy, language = "python", minHeight = "16rem" }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;

  useEffect(() => {
    if (!host.current) return;
    const contentAttributes: Record<string, string> = { "aria-label": label };
    if (id) contentAttributes.id = id;
    if (describedBy) contentAttributes["aria-describedby"] = describedBy;
    const state = EditorState.create({
      doc: value,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        history(),
        drawSelection(),
        indentOnInput(),
        bracketMatching(),
        closeBrackets(),
        highlightActiveLine(),
        highlightSelectionMatches(),
        syntaxHighlighting(accessibleHighlight),
        // Long lines wrap: the editor never scrolls sideways or widens a phone page.
        EditorView.lineWrapping,
        // Tab indents; Escape then Tab leaves the editor (CodeMirror's focus escape hatch).
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap, indentWithTab]),
        ...(language === "python" ? [python()] : []),
        EditorView.contentAttributes.of(contentAttributes),
        EditorView.theme({ "&": { minHeight }, ".cm-scroller": { minHeight } }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) onChangeRef.current(update.state.doc.toString());
        }),
      ],
    });
    view.current = new EditorView({ state, parent: host.current });
    return () => {
      view.current?.destroy();
      view.current = null;
    };
    // The editor is created once; label/language changes are not expected at runtime.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  useEffect(() => {
    const current = view.current;
    if (current && current.state.doc.toString() !== value) {
      current.dispatch({ changes: { from: 0, to: current.state.doc.length, insert: value } });
    }
  }, [value]);

  return <div className="code-editor" ref={host} />;
}
