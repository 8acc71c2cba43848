// The project wizard: classes typed or pasted become chips (the textarea stays the form's field, one class
// per line, so the page works the same without this script); the classes and template fields follow the
// chosen label and data types.
(function () {
  "use strict";
  const form = document.getElementById("project-form");
  if (!form) return;
  const textarea = document.getElementById("id_classes");
  const box = document.getElementById("class-chips");
  const list = box.querySelector(".chip-list");
  const input = box.querySelector(".chip-input");

  const split = (text) => text.split(/\r?\n|,/).map((s) => s.trim()).filter(Boolean);
  let classes = split(textarea.value);

  function sync() {
    textarea.value = classes.join("\n");
    list.replaceChildren(...classes.map((name, index) => {
      const li = document.createElement("li");
      li.className = "chip";
      const label = document.createElement("span");
      label.textContent = name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.setAttribute("aria-label", "Remove " + name);
      remove.textContent = "×";
      remove.addEventListener("click", () => { classes.splice(index, 1); sync(); input.focus(); });
      li.append(label, remove);
      return li;
    }));
  }

  function add(text) {
    for (const name of split(text)) {
      if (!classes.some((c) => c.toLowerCase() === name.toLowerCase())) classes.push(name);
    }
    sync();
  }

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === ",") {
      event.preventDefault();
      add(input.value);
      input.value = "";
    } else if (event.key === "Backspace" && !input.value && classes.length) {
      classes.pop();
      sync();
    }
  });
  input.addEventListener("paste", (event) => {
    const text = (event.clipboardData || window.clipboardData).getData("text");
    if (/[\n,]/.test(text)) {
      event.preventDefault();
      add(input.value + text);
      input.value = "";
    }
  });
  // What is still typed in the box counts when the form is sent.
  form.addEventListener("submit", () => { if (input.value.trim()) { add(input.value); input.value = ""; } });

  textarea.hidden = true;
  box.hidden = false;
  sync();

  const classesField = document.getElementById("classes-field");
  const templateField = document.getElementById("template-field");
  function follow() {
    const label = form.querySelector("input[name=label_type]:checked");
    const data = form.querySelector("input[name=data_type]:checked");
    classesField.hidden = Boolean(label && label.value === "binary");
    templateField.hidden = !(data && data.value === "json");
  }
  form.addEventListener("change", follow);
  follow();
})();
