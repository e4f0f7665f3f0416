"""A small dict-based i18n for the diner and staff pages (zh-CN and en)."""

from __future__ import annotations

from typing import Any

LANGS = ("zh", "en")

STRINGS: dict[str, tuple[str, str]] = {
    # key: (zh, en)
    "order": ("点餐", "Order"),
    "table": ("桌号", "Table"),
    "lang_switch": ("English", "中文"),
    "categories": ("菜品分类", "Categories"),
    "hide_allergens": ("隐藏含以下过敏原的菜品", "Hide dishes containing"),
    "apply": ("应用筛选", "Apply filter"),
    "allergens": ("过敏原", "Allergens"),
    "options": ("选项与备注", "Options and note"),
    "note": ("备注", "Note"),
    "qty": ("数量", "Quantity"),
    "add": ("加入", "Add"),
    "sold_out": ("已估清", "Sold out"),
    "left": ("剩余", "left"),
    "cart": ("本桌购物车", "Table cart"),
    "cart_empty": ("购物车是空的，从菜单中添加菜品。", "The cart is empty; add dishes from the menu."),
    "remove": ("删除", "Remove"),
    "by": ("点菜人", "by"),
    "total": ("合计", "Total"),
    "send": ("下单送厨房", "Send to kitchen"),
    "send_hint": ("本桌所有人的菜品会一起送出；可多次加菜。",
                  "Sends everyone's dishes at this table; you can add more rounds later."),
    "rounds": ("已下单", "Your orders"),
    "round": ("第{n}轮", "Round {n}"),
    "addon": ("加菜", "add-on"),
    "status_sent": ("已发送", "Sent"),
    "status_received": ("厨房已接单", "Kitchen received"),
    "status_cooking": ("制作中", "Cooking"),
    "status_served": ("已上菜", "Served"),
    "status_void": ("已取消", "Cancelled"),
    "comp": ("赠送", "On the house"),
    "rush": ("催菜", "Rush"),
    "service": ("服务", "Service"),
    "call_waiter": ("呼叫服务员", "Call waiter"),
    "request_bill": ("请求结账", "Request bill"),
    "task_waiter": ("呼叫服务员", "Waiter called"),
    "task_bill": ("结账请求", "Bill requested"),
    "task_rush": ("催菜", "Rush requested"),
    "task_pending": ("已通知，请稍候", "sent, waiting for staff"),
    "task_acked": ("服务员已收到", "staff on the way"),
    "nickname": ("昵称或座位（可选，不需要真实姓名）", "Nickname or seat (optional, no real names needed)"),
    "save": ("保存", "Save"),
    "you_are": ("你的昵称", "You are"),
    "refresh": ("刷新状态", "Refresh status"),
    "sent_ok": ("已送厨房：第{n}轮。", "Sent to the kitchen: round {n}."),
    "added_ok": ("已加入购物车。", "Added to the table cart."),
    "table_closed": ("本桌尚未开台，请联系服务员开台后点餐。",
                     "This table is not open for ordering yet. Please ask a member of staff."),
    "clearing": ("本桌已结账，正在清台，请稍候或联系服务员。",
                 "This table has been paid and is being cleared. Please wait or ask a member of staff."),
    "paid": ("已结账，谢谢光临！", "Paid, thank you!"),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回", "Back"),
    "offline_note": ("本页面由店内系统提供，断网也能点餐。",
                     "Served by the store itself: ordering works even when the internet is down."),
    "welcome": ("欢迎", "Welcome"),
    "portal_scan": ("请扫描餐桌上的二维码点餐。", "Scan the QR code on your table to order."),
    "queue": ("排队取号并预点餐", "Join the queue and pre-order"),
    "queue_no": ("排队号", "Queue number"),
    "queue_wait": ("请等候叫号；已点菜品会在入座后送厨房。",
                   "Please wait to be called; your dishes go to the kitchen once you are seated."),
    "party": ("人数", "Party size"),
    "take_number": ("取号", "Take a number"),
    "preorder_saved": ("预点菜品已保存", "Pre-order saved"),
    "queue_title": ("排队取号", "Queue"),
    "queue_intro": ("暂无空桌？取号排队，等候时可先点菜，入座后再送厨房。",
                    "No table yet? Take a number and build your order while you wait; it goes to the kitchen "
                    "once you are seated."),
    "queue_nick": ("昵称（可选，无需真实姓名或电话）", "Nickname (optional; no real name or phone number needed)"),
    "q_taken": ("取号成功：{n}", "Your number: {n}"),
    "q_party": ("{n}人", "party of {n}"),
    "q_waiting": ("等候中", "Waiting"),
    "q_ahead": ("前面还有{n}桌", "{n} ahead of you"),
    "q_next": ("下一位就是您", "You are next"),
    "q_wait": ("预计等候约{m}分钟", "Estimated wait: about {m} min"),
    "q_called": ("已叫号，请到前台！", "Called: please come to the desk!"),
    "q_seated": ("已入座：{t}号桌", "Seated at table {t}"),
    "q_go_table": ("打开本桌点餐页，确认后送厨房", "Open your table's page to check your order and send it"),
    "q_leave": ("取消排队", "Leave the queue"),
    "q_left": ("您已取消排队（{n}），预点菜品已删除。如需用餐，请重新取号。",
               "You left the queue ({n}); your pre-order was dropped. Take a new number if you want a table."),
    "q_skipped": ("您的号码{n}已过号。如仍需用餐，请重新取号。",
                  "Your number {n} was skipped. Take a new number if you still want a table."),
    "preorder_cart": ("预点菜品", "Your pre-order"),
    "preorder_hint": ("入座后，预点菜品会成为本桌购物车，可修改后再送厨房。",
                      "Once you are seated your pre-order becomes your table's cart: change it if you like, "
                      "then send it to the kitchen."),
    # members (会员) — diner and staff pages
    "m_members": ("会员", "Members"),
    "m_join_title": ("加入会员（可选）", "Become a member (optional)"),
    "m_join_intro": ("点餐无需注册会员。注册后可积分、享会员等级折扣和优惠券。",
                     "You do not need to be a member to order. Members earn points, get tier discounts and coupons."),
    "m_nickname": ("昵称或姓名", "Nickname or name"),
    "m_phone": ("手机号", "Mobile number"),
    "m_birthday": ("生日（月-日，可选，如 05-21）", "Birthday (MM-DD, optional, e.g. 05-21)"),
    "m_prefs": ("口味偏好（可选）", "Preferences (optional)"),
    "m_allergies": ("过敏/忌口（可选，会告知服务员）", "Allergies / foods you avoid (optional; shown to staff)"),
    "m_consents": ("同意事项（分别勾选，可随时撤回）", "Consents (each separate; withdraw any time)"),
    "m_join": ("注册会员", "Join"),
    "m_joined": ("注册成功，您的会员号：{n}。请收藏本页或截图二维码。",
                 "Welcome! Your member number: {n}. Bookmark this page or keep a screenshot of the QR code."),
    "m_own": ("我的会员", "My membership"),
    "m_number": ("会员号", "Member number"),
    "m_tier": ("等级", "Tier"),
    "m_points": ("积分", "Points"),
    "m_expires": ("{p}分 于 {d} 到期", "{p} points expire on {d}"),
    "m_no_points": ("暂无可用积分", "No points yet"),
    "m_next": ("距{t}还差 {n}", "{n} more to reach {t}"),
    "m_coupons": ("优惠券与权益", "Coupons and perks"),
    "m_no_coupons": ("暂无优惠券", "No coupons"),
    "m_valid_to": ("有效期至 {d}", "valid until {d}"),
    "m_state_issued": ("可用", "available"),
    "m_state_applied": ("使用中", "on a bill"),
    "m_state_redeemed": ("已使用", "used"),
    "m_state_expired": ("已过期", "expired"),
    "m_state_void": ("已作废", "void"),
    "m_consent_state": ("{s}（{d}，版本 {v}）", "{s} ({d}, version {v})"),
    "m_granted": ("已同意", "Given"),
    "m_withdrawn": ("未同意/已撤回", "Not given / withdrawn"),
    "m_withdraw": ("撤回", "Withdraw"),
    "m_give": ("同意", "Give"),
    "m_requests": ("我的数据", "My data"),
    "m_export": ("申请导出我的数据", "Ask for a copy of my data"),
    "m_erase": ("申请删除我的数据（注销会员）", "Ask to erase my data (leave)"),
    "m_request_open": ("已提交：{k}（{d}），店员处理后完成", "Requested: {k} ({d}); staff will complete it"),
    "m_request_done": ("已完成：{k}（{d}）", "Done: {k} ({d})"),
    "m_kind_export": ("导出", "export"),
    "m_kind_erase": ("删除", "erasure"),
    "m_attach": ("本单使用会员（积分/折扣）", "Use my membership on this bill (points, discount)"),
    "m_attached": ("已关联本桌账单", "Linked to this table's bill"),
    "m_qr_hint": ("结账时出示此二维码，或报手机号。", "Show this QR code at the counter, or give your mobile number."),
    "m_suspended": ("会员已暂停（已撤回会员权益同意）", "Membership paused (benefits consent withdrawn)"),
    "m_back_table": ("返回点餐", "Back to ordering"),
    "m_have": ("已是会员？打开您收藏的会员页面。", "Already a member? Open your bookmarked member page."),
    "fb_title": ("评价本次用餐", "Rate your visit"),
    "fb_rating": ("评分", "Rating"),
    "fb_comment": ("意见（可选，不会发送给总部）", "Comment (optional; stays in this store)"),
    "fb_send": ("提交评价", "Send"),
    "fb_thanks": ("感谢评价（{n}星），可修改。", "Thanks for rating ({n} stars); you can change it."),
}


def t(key: str, lang: str, **kw: Any) -> str:
    """Translate ``key`` to ``lang`` (zh or en), formatting ``{placeholders}``."""
    pair = STRINGS.get(key)
    if pair is None:
        return key
    text = pair[0] if lang == "zh" else pair[1]
    return text.format(**kw) if kw else text


def pick(zh: str, en: str, lang: str) -> str:
    """Return the zh or en variant of a bilingual value."""
    return zh if lang == "zh" else en


def money(cents: int, currency: str = "CNY") -> str:
    """Format cents for display (¥ for CNY)."""
    sign = "-" if cents < 0 else ""
    symbol = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{symbol}{abs(cents) / 100:.2f}"
